"""The SQLite history of finished and failed files."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ute.defaults import WORK_DIR_NAME

HISTORY_FILE_NAME = "history.sqlite"
OUTCOME_DONE = "done"
OUTCOME_FAILED = "failed"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_RETRIED = "retried"  # a cancelled file was put back to work
# The output is verified and in place; post plugins and the source's move are still to come.
# A restart picks the file up from there; the final outcome replaces this row.
OUTCOME_VERIFIED = "verified"

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id TEXT NOT NULL,
    source TEXT NOT NULL,
    output TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    source_bytes INTEGER,
    output_bytes INTEGER,
    frames INTEGER,
    duration_seconds REAL,
    encode_seconds REAL,
    fps REAL,
    settings TEXT,
    queue TEXT,
    started_at REAL,
    finished_at REAL NOT NULL,
    warnings TEXT,
    log TEXT
);
CREATE INDEX IF NOT EXISTS files_file_id ON files (file_id);
"""


@dataclass(frozen=True)
class HistoryEntry:
    file_id: str
    source: str
    outcome: str
    output: str | None = None
    error: str | None = None
    source_bytes: int | None = None
    output_bytes: int | None = None
    frames: int | None = None
    duration_seconds: float | None = None
    encode_seconds: float | None = None
    fps: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    started_at: float | None = None
    finished_at: float = field(default_factory=time.time)
    warnings: list[str] = field(default_factory=list)
    log: str = ""  # what the plugins printed (and, later, the encoders)

    @property
    def size_change_percent(self) -> float | None:
        if not self.source_bytes or self.output_bytes is None:
            return None
        return (self.output_bytes / self.source_bytes - 1) * 100


class History:
    """One table, one row per finished or failed file; safe to open from several processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as connection, connection:
            connection.row_factory = sqlite3.Row
            yield connection

    def add(self, entry: HistoryEntry) -> None:
        """Record what happened to a file; a final outcome replaces the file's "verified" row."""
        row = asdict(entry)
        row["settings"] = json.dumps(entry.settings, sort_keys=True)
        row["warnings"] = json.dumps(entry.warnings)
        columns = ", ".join(row)
        placeholders = ", ".join(f":{name}" for name in row)
        with self._connect() as connection:
            if entry.outcome != OUTCOME_VERIFIED:
                connection.execute("DELETE FROM files WHERE file_id = ? AND outcome = ?",
                                   (entry.file_id, OUTCOME_VERIFIED))  # fmt: skip
            connection.execute(f"INSERT INTO files ({columns}) VALUES ({placeholders})", row)

    def entries(self) -> list[HistoryEntry]:
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM files ORDER BY finished_at, id").fetchall()
        return [_entry(row) for row in rows]

    def recent(self, limit: int) -> list[HistoryEntry]:
        """The last limit entries, newest first."""
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM files ORDER BY finished_at DESC, id DESC LIMIT ?",
                                      (limit,)).fetchall()  # fmt: skip
        return [_entry(row) for row in rows]

    def latest(self, file_id: str) -> HistoryEntry | None:
        """The last thing that happened to this file (by its id), if anything."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT * FROM files WHERE file_id = ? ORDER BY finished_at DESC, id DESC LIMIT 1",
                (file_id,),
            ).fetchone()
        return _entry(row) if row else None


def find_history(outbox: Path) -> History | None:
    """The service's history under outbox, if there is one (never creates it)."""
    path = outbox / WORK_DIR_NAME / HISTORY_FILE_NAME
    return History(path) if path.exists() else None


def _entry(row: sqlite3.Row) -> HistoryEntry:
    data = dict(row)
    data.pop("id")
    data["settings"] = json.loads(data["settings"] or "{}")
    data["warnings"] = json.loads(data["warnings"] or "[]")
    data["log"] = data["log"] or ""
    return HistoryEntry(**data)
