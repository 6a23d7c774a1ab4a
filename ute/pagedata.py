"""What UTE's web page shows, as one JSON-ready document: `ute status --json`, each unfinished
file's chunk map, the swarm's fps over the last hour and the latest history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from ute import snapshot, state
from ute.chunkmap import chunk_map
from ute.history import History, HistoryEntry

HISTORY_ROWS = 50
MAPPED_STATES = ("queued", "encoding", "paused", "muxing")


def page_state(connection: redis.Redis, history: History | None) -> dict[str, Any]:
    document = snapshot.snapshot(connection)
    for entry in document["jobs"]:
        entry["chunk_map"] = _chunk_map(connection, entry)
    document["fps_history"] = [{"t": start, "fps": round(fps, 2)}
                               for start, fps in state.swarm_fps_history(connection)]  # fmt: skip
    document["history"] = [history_row(entry) for entry in history.recent(HISTORY_ROWS)] if history else []
    return document


def _chunk_map(connection: redis.Redis, entry: dict[str, Any]) -> list[dict[str, Any]] | None:
    if entry["state"] not in MAPPED_STATES or not entry.get("work_id"):
        return None
    record = state.file_record(connection, entry["id"]) or {}
    frames = json.loads(record.get("chunk_frames", "[]"))
    try:
        cells = chunk_map(connection, entry["work_id"], frames, all_done=entry["state"] == "muxing")
    except redis.exceptions.ResponseError:  # rq reads jobs in MULTI, which a full Redis refuses
        return None
    return [{**vars(cell), "state": str(cell.state)} for cell in cells]


def history_row(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.file_id, "name": Path(entry.source).name, "outcome": entry.outcome, "error": entry.error,
        "queue": entry.queue, "source_bytes": entry.source_bytes, "output_bytes": entry.output_bytes,
        "size_change_percent": entry.size_change_percent, "frames": entry.frames,
        "encode_seconds": entry.encode_seconds, "fps": entry.fps, "finished_at": entry.finished_at,
    }  # fmt: skip
