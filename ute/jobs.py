"""The rq job functions. Arguments and results are JSON; workers run nothing else."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job

from ute import commands, pathmap, probe, runner, state, tools
from ute.errors import EncodeError
from ute.settings import EncodeSettings

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class FileSpec:
    """What every chunk of a file shares. Kept in Redis, not in job arguments, so that no file
    name reaches rq-dashboard (which shows job arguments unescaped)."""

    source: str
    video_index: int
    work_dir: str  # where the segments go
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def on_worker(self, mappings: list[pathmap.PathMapping]) -> FileSpec:
        """The same file, with its paths as this worker machine sees them."""
        return replace(self, source=pathmap.on_worker(self.source, mappings),
                       work_dir=pathmap.on_worker(self.work_dir, mappings))  # fmt: skip


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk, as the job's only argument: JSON, and no names in it."""

    file_id: str
    index: int
    start: int
    frames: int
    start_pts: int  # the first frame's pts in the source's video time base
    seek_microseconds: int | None = None  # None: read from the file's start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def input(self) -> commands.ChunkInput:
        return commands.ChunkInput(self.start_pts, self.frames, self.seek_microseconds)


def segment_name(chunk_index: int) -> str:
    return f"{chunk_index:05d}.mkv"


def encode_chunk(chunk_json: dict[str, Any]) -> dict[str, Any]:
    """The rq job: encode one chunk of the file described in Redis."""
    job = get_current_job()
    if job is None:
        raise EncodeError("encode_chunk runs inside an rq worker; use encode(...) directly")
    chunk = ChunkSpec(**chunk_json)
    file_json = state.load_file_spec(job.connection, chunk.file_id)
    if file_json is None:
        raise EncodeError(f"chunk {chunk.index} of file {chunk.file_id}: the file's description is "
                          "gone from Redis (the coordinator puts it back within seconds)")  # fmt: skip
    return encode(FileSpec(**file_json).on_worker(pathmap.from_env()), chunk, job)


def encode(file: FileSpec, chunk: ChunkSpec, job: Job | None = None) -> dict[str, Any]:
    """Encode one chunk into its segment, verify its frame count, and commit it atomically.

    Messages name the chunk by file id, never by file name (they end up in rq-dashboard).
    """
    segment = Path(file.work_dir) / segment_name(chunk.index)
    name = f"chunk {chunk.index} of file {chunk.file_id}"
    if segment.exists() and probe.count_frames(segment) == chunk.frames:
        log.info("%s: segment already done, reusing it", name)
        return _result(chunk, segment, seconds=0.0, reused=True, log_lines=("segment reused",))

    attempt = uuid.uuid4().hex
    chunk_key = state.chunk_key(chunk.file_id, chunk.index)
    if job is not None:
        state.claim_chunk(job.connection, chunk_key, attempt)
    # A per-attempt name: a late attempt can never write into another attempt's file.
    part = segment.with_name(f"{segment.name}.{attempt[:8]}.part")
    argv = commands.encode_chunk(
        tools.ffmpeg(), Path(file.source), file.video_index, chunk.input,
        EncodeSettings.from_json(file.settings), part,
    )  # fmt: skip
    started = time.monotonic()
    with _heartbeat(job), _cleanup_on_failure(part, name, file):
        outcome = runner.run(argv, on_progress=_progress_reporter(job))
        written = probe.count_frames(part)
        if written != chunk.frames:
            raise EncodeError(f"{name}: the encoder wrote {written} of {chunk.frames} frames")
        _commit(job, chunk_key, attempt, part, segment, name)
    return _result(chunk, segment, seconds=time.monotonic() - started, reused=False,
                   log_lines=outcome.stderr_tail)  # fmt: skip


def _commit(job: Job | None, chunk: str, attempt: str, part: Path, segment: Path, name: str) -> None:
    """Rename part to segment, unless a newer attempt at this chunk has taken it over."""
    if job is None:
        os.replace(part, segment)
        return
    with state.commit_fence(job.connection, chunk, attempt) as allowed:
        if not allowed:
            raise EncodeError(f"{name}: a newer attempt took this chunk over; this one is discarded")
        os.replace(part, segment)


@contextlib.contextmanager
def _cleanup_on_failure(part: Path, name: str, file: FileSpec) -> Iterator[None]:
    """No half-written part survives a failure; every failure names its chunk, and no path (the
    message is shown by rq-dashboard, unescaped)."""
    try:
        yield
    except Exception as error:
        part.unlink(missing_ok=True)
        if isinstance(error, EncodeError):
            raise
        message = str(error).replace(file.source, "SOURCE").replace(file.work_dir, "WORKDIR")
        raise EncodeError(f"{name}: {message}") from error


@contextlib.contextmanager
def _heartbeat(job: Job | None) -> Iterator[None]:
    """Refresh the chunk's short-lived alive key while it encodes (see monitor.py)."""
    if job is None:
        yield
        return
    stop = threading.Event()
    worker = job.worker_name or socket.gethostname()

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(redis.exceptions.RedisError):
                state.beat(job.connection, job.id, worker)
            stop.wait(state.HEARTBEAT_SECONDS)

    thread = threading.Thread(target=beat, name="ute-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _result(
    chunk: ChunkSpec, segment: Path, *, seconds: float, reused: bool, log_lines: Sequence[str]
) -> dict[str, Any]:
    """The job's return value, which rq keeps: timings, where it ran, and the encoder's log."""
    return {
        "index": chunk.index,
        "frames": chunk.frames,
        "bytes": segment.stat().st_size,
        "seconds": round(seconds, 3),
        "fps": round(chunk.frames / seconds, 2) if seconds > 0 else 0.0,
        "host": socket.gethostname(),
        "reused": reused,
        "log": list(log_lines),
    }


def _progress_reporter(job: Job | None) -> runner.ProgressCallback:
    """Publish frames done to the job's meta, at most once a second; Redis hiccups are ignored."""
    last_saved = 0.0

    def report(block: dict[str, str]) -> None:
        nonlocal last_saved
        now = time.monotonic()
        if job is None or now - last_saved < PROGRESS_INTERVAL_SECONDS:
            return
        last_saved = now
        job.meta["frames_done"] = int(block.get("frame", "0") or 0)
        job.meta["fps"] = float(block.get("fps", "0") or 0)
        with contextlib.suppress(redis.exceptions.RedisError):
            job.save_meta()

    return report


# The only functions a UTE worker will run.
ALLOWED_JOB_FUNCTIONS = frozenset({f"{__name__}.encode_chunk"})
