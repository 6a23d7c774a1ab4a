"""The rq job functions. Arguments and results are JSON; workers run nothing else."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
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

from ute import (
    chunkclient,
    commands,
    cores,
    facts,
    jobspec,
    pathmap,
    probe,
    runner,
    state,
    tools,
    transfer,
    verify,
)
from ute.errors import EncodeError, ProbeError
from ute.plan import segment_name
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
        """As workers accept it: paths in normal form (`Path.absolute()` keeps a typed `../in`, and
        workers refuse '..')."""
        return {**asdict(self), "source": os.path.normpath(self.source),
                "work_dir": os.path.normpath(self.work_dir)}  # fmt: skip

    def on_worker(self, mappings: list[pathmap.PathMapping]) -> FileSpec:
        """The same file, with its paths as this worker machine sees them."""
        return replace(self, source=pathmap.on_worker(self.source, mappings),
                       work_dir=pathmap.on_worker(self.work_dir, mappings))  # fmt: skip


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk, as the job's only argument: JSON, and no names in it."""

    work_id: str  # state.work_id: the file's id and its settings' digest
    index: int
    start: int
    frames: int
    start_pts: int  # the first frame's pts in the source's video time base
    seek_microseconds: int | None = None  # None: read from the file's start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def file_id(self) -> str:
        """The file's one id, as `ute status` shows it."""
        return state.file_id_of(self.work_id)

    @property
    def name(self) -> str:
        """How messages name this chunk."""
        return f"chunk {self.index} of file {self.file_id}"

    @property
    def input(self) -> commands.ChunkInput:
        return commands.ChunkInput(self.start_pts, self.frames, self.seek_microseconds)


def encode_chunk(chunk_json: dict[str, Any]) -> dict[str, Any]:
    """The rq job: encode one chunk of the file described in Redis.

    Both come from Redis, which others may write: nothing runs, and nothing is written, unless
    they are what UTE itself writes (see jobspec)."""
    job = get_current_job()
    if job is None:
        raise EncodeError("encode_chunk runs inside an rq worker; use encode(...) directly")
    jobspec.check_chunk(chunk_json)
    chunk = ChunkSpec(**chunk_json)
    name = jobspec.chunk_name(chunk_json)
    file_json = _file_json(job.connection, name, chunk.work_id)
    jobspec.check_file(file_json, chunk.work_id, name)
    described = FileSpec(**file_json)
    file = described.on_worker(pathmap.from_env())
    jobspec.check_on_worker(file.source, file.work_dir, chunk.work_id, name)
    hidden = jobspec.Hidden.of([described.source, file.source], [described.work_dir, file.work_dir])
    return encode(file, chunk, job, hidden=hidden)


def _file_json(connection: redis.Redis, name: str, work_id: str) -> Any:
    try:
        file_json = state.load_file_spec(connection, work_id)
    except ValueError:
        raise EncodeError(f"{name}: refused: the file's description is not JSON; "
                          f"{jobspec.FROM_REDIS}") from None  # fmt: skip
    if file_json is None:
        raise EncodeError(f"{name}: the file's description is gone from Redis (the coordinator puts "
                          "it back within seconds)")  # fmt: skip
    return file_json


def encode(
    file: FileSpec, chunk: ChunkSpec, job: Job | None = None, *, hidden: jobspec.Hidden | None = None
) -> dict[str, Any]:
    """Encode one chunk into its segment, verify its frame count, and commit it atomically.

    Every failure is one EncodeError that names the chunk by file id, with no path or file name
    in it (hidden's, else file's) and nothing chained: rq keeps its traceback, and rq-dashboard
    shows that unescaped. The encoder's log in the result is scrubbed the same way.
    """
    if hidden is None:
        hidden = jobspec.Hidden.of([file.source], [file.work_dir])
    name = chunk.name
    try:
        return _encode(file, chunk, job, name, hidden)
    except Exception as error:
        log.warning("%s failed (this log only: the paths are left in): %s", name, error)
        said = str(error) or type(error).__name__
        message = said if isinstance(error, EncodeError) else f"{name}: {said}"
        failure = EncodeError(hidden.scrub(message))
    # Raised out here, so that it has no __context__ either: the traceback rq keeps is this one.
    raise failure


def _encode(file: FileSpec, chunk: ChunkSpec, job: Job | None, name: str, hidden: jobspec.Hidden
            ) -> dict[str, Any]:  # fmt: skip
    segment = Path(file.work_dir) / segment_name(chunk.index)
    way = _way(file, chunk, job, name)
    if isinstance(way, SharedFolder) and segment.exists() and probe.count_frames(segment) == chunk.frames:
        log.info("%s: segment already done, reusing it", name)
        _record_segment(job, chunk, segment.stat().st_size, reused=True)
        return _result(chunk, segment.stat().st_size, seconds=0.0, reused=True, log_lines=("segment reused",))

    attempt = uuid.uuid4().hex
    chunk_key = state.chunk_key(chunk.work_id, chunk.index)
    if job is not None:
        state.claim_chunk(job.connection, chunk_key, attempt)
    started = time.monotonic()
    settings = EncodeSettings.from_json(file.settings)
    threads = (None if job is None or commands.names_thread_pool(settings)
               else cores.threads_per_worker(job.connection))  # fmt: skip
    report = _ProgressReporter(job)
    with way.folder() as folder:
        # A per-attempt name: a late attempt can never write into another attempt's file.
        part = folder / f"{segment.name}.{attempt[:8]}.part"
        check_part = part.with_name(part.name + verify.CHECK_SUFFIX)
        argv = commands.encode_chunk(tools.ffmpeg(), way.source(file, chunk), file.video_index, chunk.input,
                                     settings, part, threads)  # fmt: skip
        with _heartbeat(job), _cleanup_on_failure(part), _cleanup_on_failure(check_part):
            outcome = runner.run(argv, on_progress=report)
            _check_segment(part, check_part, chunk, name, threads)
            size = part.stat().st_size
            committing = time.monotonic()
            way.commit(job, chunk, chunk_key, attempt, part, check_part, name)
            commit_seconds = time.monotonic() - committing
    report.count_frames(chunk.frames)
    _record_segment(job, chunk, size)
    return _result(chunk, size, seconds=time.monotonic() - started, reused=False,
                   log_lines=[hidden.scrub(line) for line in outcome.stderr_tail],
                   commit_seconds=commit_seconds, way_in=way.input, threads=threads)  # fmt: skip


def _check_segment(part: Path, check_part: Path, chunk: ChunkSpec, name: str, threads: int | None) -> None:
    """The segment holds and decodes to exactly the chunk's frames (decoded with the encoder's
    threads); what the coordinator would otherwise decode the whole output for is kept beside it."""
    try:  # one demux: the frames written (a packet each) and the digests the check keeps
        digests = facts.packet_digests(part, 0)
    except (ProbeError, OSError):
        digests = []  # unreadable: nothing was written
    if len(digests) != chunk.frames:
        raise EncodeError(f"{name}: the encoder wrote {len(digests)} of {chunk.frames} frames")
    try:
        check = verify.check_segment(part, chunk.frames, digests, threads)
    except ProbeError as error:
        raise EncodeError(f"{name}: the segment does not decode: {error}") from None
    if check.decoded != chunk.frames:
        raise EncodeError(f"{name}: {check.decoded} of the encoder's {chunk.frames} frames decode")
    verify.save_check(check, check_part)


def _way(file: FileSpec, chunk: ChunkSpec, job: Job | None, name: str) -> SharedFolder | OverNetwork:
    """The shared folder when this machine sees the coordinator's work folder (directly or mapped),
    else the network; noted for `ute status`."""
    if job is None or _sees(file):
        way: SharedFolder | OverNetwork = SharedFolder(Path(file.work_dir))
    else:
        worker = job.worker_name or socket.gethostname()
        way = OverNetwork(chunkclient.coordinator_for(job.connection, chunk.work_id, worker, name))
        log.info("%s: no shared folder here; over the network from %s", name, way.coordinator.ticket.url)
    if job is not None and job.worker_name:
        with contextlib.suppress(redis.exceptions.RedisError):
            state.note_worker_input(job.connection, job.worker_name, way.input)
    return way


def _sees(file: FileSpec) -> bool:
    """Whether this machine writes into the file's work folder: a share that holds the work folder
    holds the source too (a source missing there is a failure to report, not a reason to switch)."""
    return os.path.isdir(file.work_dir) and os.access(file.work_dir, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class SharedFolder:
    """The source read where it is; the segment written into the work folder and renamed into place."""

    work_dir: Path
    input = transfer.INPUT_SHARED_FOLDER

    @contextlib.contextmanager
    def folder(self) -> Iterator[Path]:
        yield self.work_dir

    def source(self, file: FileSpec, chunk: ChunkSpec) -> Path:
        return Path(file.source)

    def commit(self, job: Job | None, chunk: ChunkSpec, chunk_key: str, attempt: str, part: Path,
               check_part: Path, name: str) -> None:  # fmt: skip
        segment = self.work_dir / segment_name(chunk.index)
        _commit(job, chunk_key, attempt, verify.into_place(part, check_part, segment), name)


@dataclass(frozen=True)
class OverNetwork:
    """The source read from the coordinator in byte ranges; the segment encoded in a folder of this
    worker's own and sent back for the coordinator to commit behind the same fence."""

    coordinator: chunkclient.Coordinator
    input = transfer.INPUT_NETWORK

    @contextlib.contextmanager
    def folder(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="ute-chunk-") as folder:
            yield Path(folder)

    def source(self, file: FileSpec, chunk: ChunkSpec) -> commands.RemoteSource:
        return self.coordinator.source(chunk.work_id, chunk.index)

    def commit(self, job: Job | None, chunk: ChunkSpec, chunk_key: str, attempt: str, part: Path,
               check_part: Path, name: str) -> None:  # fmt: skip
        chunkclient.send_segment(
            self.coordinator, chunk.work_id, chunk.index, attempt, part, check_part, name
        )


def _commit(job: Job | None, chunk: str, attempt: str, renames: dict[Path, Path], name: str) -> None:
    """Rename the attempt's files into place (the segment last), unless a newer attempt at this
    chunk has taken it over."""
    if job is None:
        for old, new in renames.items():
            os.replace(old, new)
        return
    with state.commit_fence(job.connection, chunk, attempt) as allowed:
        if not allowed:
            raise EncodeError(f"{name}: a newer attempt took this chunk over; this one is discarded")
        for old, new in renames.items():
            os.replace(old, new)


@contextlib.contextmanager
def _cleanup_on_failure(part: Path) -> Iterator[None]:
    """No half-written part survives a failure."""
    try:
        yield
    except Exception:
        part.unlink(missing_ok=True)
        raise


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
    chunk: ChunkSpec, size: int, *, seconds: float, reused: bool, log_lines: Sequence[str],
    commit_seconds: float = 0.0, way_in: str = transfer.INPUT_SHARED_FOLDER, threads: int | None = None,
) -> dict[str, Any]:
    """The job's return value, which rq keeps: timings, where it ran, and the encoder's log."""
    return {
        "index": chunk.index,
        "frames": chunk.frames,
        "bytes": size,
        "seconds": round(seconds, 3),
        "fps": round(chunk.frames / seconds, 2) if seconds > 0 else 0.0,
        "host": socket.gethostname(),
        "reused": reused,
        "input": way_in,
        # of seconds: committing the segment (a rename, or sending it to the coordinator)
        "commit_seconds": round(commit_seconds, 3),
        "threads": threads,  # x265's pool and the check's decoder (None: their own choice)
        "log": list(log_lines),
    }


def _record_segment(job: Job | None, chunk: ChunkSpec, size: int, *, reused: bool = False) -> None:
    """The committed segment's size and who encoded it, for the dashboard; a reused segment's
    facts stay those of the worker that encoded it. Never fails the chunk."""
    if job is None:
        return
    with contextlib.suppress(redis.exceptions.RedisError):
        facts = {"bytes": size, "worker": job.worker_name, "host": socket.gethostname()}
        state.record_segment(job.connection, chunk.work_id, chunk.index, facts, only_if_missing=reused)


class _ProgressReporter:
    """Publishes frames done and fps to the job's meta and counts the frames encoded for the
    swarm's fps history, at most once a second; Redis hiccups are ignored."""

    def __init__(self, job: Job | None) -> None:
        self.job = job
        self.last_saved = 0.0
        self.frames_counted = 0

    def __call__(self, block: dict[str, str]) -> None:
        now = time.monotonic()
        if self.job is None or now - self.last_saved < PROGRESS_INTERVAL_SECONDS:
            return
        self.last_saved = now
        frames_done = int(block.get("frame", "0") or 0)
        self.job.meta["frames_done"] = frames_done
        self.job.meta["fps"] = float(block.get("fps", "0") or 0)
        with contextlib.suppress(redis.exceptions.RedisError):
            self.job.save_meta()
        self.count_frames(frames_done)

    def count_frames(self, frames_done: int) -> None:
        if self.job is None or frames_done <= self.frames_counted:
            return
        with contextlib.suppress(redis.exceptions.RedisError):
            state.count_encoded_frames(self.job.connection, frames_done - self.frames_counted)
            self.frames_counted = frames_done


# The only functions a UTE worker will run.
ALLOWED_JOB_FUNCTIONS = frozenset({f"{__name__}.encode_chunk"})
