"""What UTE's web page shows, as one JSON-ready document: `ute status --json` with each unfinished
file's chunk map, the swarm's fps over the last hour and the latest history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from ute import snapshot, state
from ute.history import History, HistoryEntry

HISTORY_ROWS = 50


def page_state(connection: redis.Redis, history: History | None) -> dict[str, Any]:
    document = snapshot.snapshot(connection, chunk_maps=True)
    document["fps_history"] = [{"t": start, "fps": round(fps, 2)}
                               for start, fps in state.swarm_fps_history(connection)]  # fmt: skip
    document["history"] = [history_row(entry) for entry in history.recent(HISTORY_ROWS)] if history else []
    return document


def history_row(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.file_id, "name": Path(entry.source).name, "outcome": entry.outcome, "error": entry.error,
        "queue": entry.queue, "source_bytes": entry.source_bytes, "output_bytes": entry.output_bytes,
        "size_change_percent": entry.size_change_percent, "frames": entry.frames,
        "encode_seconds": entry.encode_seconds, "fps": entry.fps, "finished_at": entry.finished_at,
    }  # fmt: skip
