"""A plain snapshot of the swarm from Redis: workers, files, speeds, ETAs. The TUI only draws it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from rq.job import Job

from ute import chunkmap, farm, state
from ute.plan import Chunk
from ute.progress import look_at_chunks

ACTIVE_STATES = ("queued", "encoding")
MAPPED_STATES = ("queued", "encoding", "paused")  # muxing: every cell done


def snapshot(connection: redis.Redis, *, chunk_maps: bool = False) -> dict[str, Any]:
    """The `ute status --json` document (README: ute status); with chunk_maps, each unfinished
    file's chunk map too (the dashboard's), from the same reads."""
    refusing = farm.redis_problem(connection)
    # rq reads jobs in MULTI blocks, which a Redis that refuses writes refuses too: then only
    # what plain reads give is shown.
    detailed = refusing is None
    live = state.live_workers(connection)
    running = [facts["job"] for facts in live if facts.get("job")] if detailed else []
    jobs = dict(zip(running, state.fetch_jobs(connection, running), strict=True))  # one round trip
    moved = state.workers_moved(connection, [str(facts["name"]) for facts in live])
    workers = [_worker(facts, jobs.get(facts.get("job") or ""), moved[facts["name"]]) for facts in live]
    swarm_fps = round(sum(worker["fps"] for worker in workers), 2)
    files = [_file(connection, file_id, record, detailed, chunk_maps)
             for file_id, record in state.file_records(connection)]  # fmt: skip
    paused = refusing or state.farm_pause(connection)
    return {"swarm_fps": swarm_fps, "paused": paused, "workers": workers, "jobs": files,
            "queue_eta_seconds": _queue_eta(files, swarm_fps)}  # fmt: skip


def _worker(facts: dict[str, Any], job: Job | None, moved: dict[str, Any]) -> dict[str, Any]:
    """One live worker, with the chunk job it is running (None when idle), how it reads sources
    and writes segments, and the bytes it moved over the network."""
    chunk = None
    fps = 0.0
    if job is not None:
        spec = job.args[0]
        chunk = {"job": job.id, "index": int(spec["index"]), "file_id": state.file_id_of(spec["work_id"]),
                 "work_id": spec["work_id"], "frames_done": int(job.meta.get("frames_done", 0)),
                 "frames": int(spec["frames"])}  # fmt: skip
        fps = float(job.meta.get("fps", 0.0))
    return {
        "name": facts["name"],
        "host": facts.get("host", "?"),
        "state": "busy" if chunk else "idle",
        "chunk": chunk,
        "fps": round(fps, 2),
        "cpu_percent": facts.get("cpu_percent"),
        "memory_bytes": facts.get("memory_bytes"),
        "input": moved["input"],
        "bytes_sent": moved["bytes_sent"],
        "bytes_received": moved["bytes_received"],
    }


def _file(connection: redis.Redis, file_id: str, record: dict[str, str], detailed: bool, chunk_map: bool
          ) -> dict[str, Any]:  # fmt: skip
    chunk_frames = json.loads(record.get("chunk_frames", "[]"))
    frames_total = int(record.get("frames_total", sum(chunk_frames)))
    file_state = record.get("state", "queued")
    work_id = record.get("work_id")
    entry: dict[str, Any] = {
        "id": file_id, "source": record.get("source", "?"), "name": Path(record.get("source", "?")).name,
        "state": file_state, "queue": record.get("queue"),
        "chunks_total": len(chunk_frames), "chunks_done": 0,
        "frames_total": frames_total, "frames_done": 0, "fps": 0.0, "eta_seconds": None,
        "output": record.get("output"), "error": record.get("error"), "work_id": work_id, "bytes_done": 0,
    }  # fmt: skip
    if chunk_map:
        entry["chunk_map"] = None
    if not work_id:
        return entry
    segments = state.segments(connection, work_id)
    entry["bytes_done"] = sum(int(facts.get("bytes", 0)) for facts in segments.values())
    if file_state == "muxing" and chunk_map:
        entry["chunk_map"] = _cells(chunkmap.cells(chunk_frames, [None] * len(chunk_frames), {}, {}, segments,
                                                   all_done=True))  # fmt: skip
    if file_state in ("done", "muxing"):
        entry.update(chunks_done=len(chunk_frames), frames_done=frames_total)
    elif chunk_frames and detailed:
        look = look_at_chunks(connection, work_id, _chunks(chunk_frames))
        progress = look.progress
        entry.update(chunks_done=progress.chunks_done, frames_done=progress.frames_done,
                     fps=round(progress.fps, 2))  # fmt: skip
        if file_state == "encoding" and progress.chunks_done == 0 and progress.fps == 0:
            entry["state"] = "queued"
        if progress.fps > 0:
            entry["eta_seconds"] = round((progress.frames_total - progress.frames_done) / progress.fps, 1)
        if chunk_map and file_state in MAPPED_STATES:
            jobs = {index: chunkmap.job_facts(job) for index, job in look.details.items()}
            cells = chunkmap.cells(chunk_frames, look.statuses, state.chunk_generations(connection, work_id),
                                   jobs, segments)  # fmt: skip
            entry["chunk_map"] = _cells(cells)
    return entry


def _cells(cells: list[chunkmap.ChunkCell]) -> list[dict[str, Any]]:
    return [dict(vars(cell)) for cell in cells]  # flat: dataclasses.asdict's deep copy cost 40%


def _chunks(chunk_frames: list[int]) -> list[Chunk]:
    chunks, start = [], 0
    for index, frames in enumerate(chunk_frames):
        chunks.append(Chunk(index, start, start + frames))
        start += frames
    return chunks


def _queue_eta(files: list[dict[str, Any]], swarm_fps: float) -> float | None:
    """Seconds until every queued and encoding file is done, at the swarm's current speed."""
    remaining = sum(f["frames_total"] - f["frames_done"] for f in files if f["state"] in ACTIVE_STATES)
    if remaining == 0:
        return 0.0
    return round(remaining / swarm_fps, 1) if swarm_fps > 0 else None
