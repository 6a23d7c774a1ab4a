"""The rq job functions. Arguments and results are JSON; workers run nothing else."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job

from ute import commands, probe, runner, state, tools
from ute.errors import EncodeError
from ute.settings import EncodeSettings

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class ChunkSpec:
    """Everything a worker needs to encode one chunk; travels as JSON."""

    file_id: str
    source: str
    video_index: int
    index: int
    start: int
    frames: int
    seek_microseconds: int
    segment: str  # where the finished segment goes
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def encode_chunk(spec_json: dict[str, Any]) -> dict[str, Any]:
    """Encode one chunk into its segment, verify its frame count, and commit it atomically."""
    spec = ChunkSpec(**spec_json)
    segment = Path(spec.segment)
    name = f"chunk {spec.index} of {Path(spec.source).name!r}"
    if segment.exists() and probe.count_frames(segment) == spec.frames:
        log.info("%s: segment already done, reusing it", name)
        return _result(spec, segment, seconds=0.0, reused=True)

    job = get_current_job()
    attempt = uuid.uuid4().hex
    if job is not None:
        state.claim_chunk(job.connection, state.chunk_key(spec.file_id, spec.index), attempt)
    # A per-attempt name: a late attempt can never write into another attempt's file.
    part = segment.with_name(f"{segment.name}.{attempt[:8]}.part")
    settings = EncodeSettings.from_json(spec.settings)
    argv = commands.encode_chunk(
        tools.ffmpeg(), Path(spec.source), spec.video_index, spec.seek_microseconds,
        spec.frames, settings, part,
    )  # fmt: skip
    started = time.monotonic()
    with _heartbeat(job), _cleanup_on_failure(part, name):
        runner.run(argv, on_progress=_progress_reporter(job))
        written = probe.count_frames(part)
        if written != spec.frames:
            raise EncodeError(f"{name}: the encoder wrote {written} of {spec.frames} frames")
        _commit(job, state.chunk_key(spec.file_id, spec.index), attempt, part, segment, name)
    return _result(spec, segment, seconds=time.monotonic() - started, reused=False)


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
def _cleanup_on_failure(part: Path, name: str) -> Iterator[None]:
    """No half-written part survives a failure, and every failure names its chunk and file."""
    try:
        yield
    except Exception as error:
        part.unlink(missing_ok=True)
        if isinstance(error, EncodeError):
            raise
        raise EncodeError(f"{name}: {error}") from error


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


def _result(spec: ChunkSpec, segment: Path, *, seconds: float, reused: bool) -> dict[str, Any]:
    return {
        "index": spec.index,
        "frames": spec.frames,
        "bytes": segment.stat().st_size,
        "seconds": round(seconds, 3),
        "fps": round(spec.frames / seconds, 2) if seconds > 0 else 0.0,
        "host": socket.gethostname(),
        "reused": reused,
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
