"""`ute encode`: one file through the whole swarm path (probe, plan, queue, wait, mux, verify)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ute import config, control, farm, monitor, pipeline, state, submit
from ute.errors import EncodeError, UteError
from ute.localworkers import local_workers
from ute.logs import console
from ute.probe import probe
from ute.progress import ChunkProgress
from ute.redis_server import private_redis
from ute.settings import EncodeSettings

log = logging.getLogger(__name__)

WORK_DIR_NAME = ".ute-work"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class EncodeReport:
    source: Path
    output: Path
    frames: int
    chunks: int
    seconds: float
    source_bytes: int
    output_bytes: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_paths(source: Path, output: Path, *, force: bool) -> None:
    if output.suffix.lower() != ".mkv":
        raise UteError(f"{output}: UTE writes Matroska; give the output a .mkv name")
    if output.exists() and output.resolve() == source.resolve():
        raise UteError(f"{output}: the output would overwrite the source; choose another name")
    if output.exists() and not force:
        raise UteError(f"{output}: already exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise UteError(f"{output.parent}: no such folder for the output")


def encode_file(
    source: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    workers: int,
    redis_url: str | None,
    force: bool = False,
) -> EncodeReport:
    """Encode source into output through rq workers; raise UteError unless verified."""
    source, output = source.absolute(), output.absolute()
    check_paths(source, output, force=force)
    started = time.monotonic()
    settings = config.apply(settings, config.file_layers(source))
    prepared = pipeline.prepare(probe(source), settings, output.parent / WORK_DIR_NAME)
    prepared.work_dir.mkdir(parents=True, exist_ok=True)
    log.info("%s: %d frames at %.3f fps, %d chunks", source.name, prepared.info.frame_count,
             prepared.info.fps, len(prepared.chunks))  # fmt: skip

    info = prepared.info
    job_id = state.fingerprint(info.path, info.size, info.mtime_ns)
    with _redis(redis_url, prepared.work_dir) as url, \
            local_workers(url, workers, prepared.work_dir) as local:  # fmt: skip
        connection = state.connect(url)
        submit.clear_chunks(connection, prepared.file_id, len(prepared.chunks))
        submit.submit_chunks(connection, prepared.file_spec, prepared.specs)
        state.save_file_record(connection, job_id, source=info.path, state="encoding", queue=state.QUEUE_LOW,
                               frames_total=info.frame_count, file_id=prepared.file_id,
                               chunk_frames=[c.frames for c in prepared.chunks])  # fmt: skip
        if workers == 0:
            log.info("waiting for workers: start `ute-worker --redis-url %s` on any machine",
                     state.redacted(url))  # fmt: skip
        try:
            disks = farm.DiskGuard(connection, [prepared.work_dir, output.parent])
            _wait_for_chunks(connection, prepared, job_id, local, disks)
            state.save_file_record(connection, job_id, state="muxing")
            verified = pipeline.finalize(prepared, output, replace=force)
        except BaseException as error:  # failed, cancelled, interrupted: no chunk is left to others
            with contextlib.suppress(redis.exceptions.RedisError):
                control.take_off_queue(connection, prepared.file_id, len(prepared.chunks), stop_running=True)
                submit.clear_chunks(connection, prepared.file_id, len(prepared.chunks))
                if isinstance(error, UteError):
                    outcome = "cancelled" if isinstance(error, CancelledError) else "failed"
                    state.finish_file_record(connection, job_id, outcome, error=str(error), control="")
            raise
        state.finish_file_record(connection, job_id, "done", output=str(output))
    shutil.rmtree(prepared.work_dir, ignore_errors=True)
    _remove_if_empty(prepared.work_dir.parent)
    return EncodeReport(
        source, output, verified.frames, len(prepared.chunks), time.monotonic() - started,
        prepared.info.size, verified.size,
    )  # fmt: skip


@contextlib.contextmanager
def _redis(redis_url: str | None, work_dir: Path) -> Iterator[str]:
    if redis_url:
        yield redis_url
        return
    data_dir = work_dir / "redis"
    # The segments on disk are what a rerun resumes from; old queue state would only confuse it.
    shutil.rmtree(data_dir, ignore_errors=True)
    with private_redis(data_dir) as url:
        yield url


class CancelledError(UteError):
    """`ute cancel` was asked for the file this run encodes."""


def _wait_for_chunks(
    connection: redis.Redis, prepared: pipeline.PreparedFile, job_id: str,
    local_workers: Sequence[subprocess.Popen[bytes]], disks: farm.DiskGuard,
) -> None:  # fmt: skip
    """Until every chunk is encoded and there is room to mux them; `ute pause` holds the queued
    chunks back until `ute resume`, `ute cancel` ends the run."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} frames"),
        TextColumn("{task.fields[chunks]}"),
        TextColumn("{task.fields[fps]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        watchdog = monitor.ChunkMonitor(connection)
        task = bar.add_task(prepared.name, total=prepared.info.frame_count, chunks="", fps="")
        backoff = farm.RedisBackoff(POLL_SECONDS)
        paused = False
        while True:
            if local_workers and all(p.poll() is not None for p in local_workers):
                raise EncodeError(f"every local worker has exited; see their logs in {prepared.work_dir}")
            try:
                request = state.file_control(connection, job_id)
                if request == control.CANCEL:
                    raise CancelledError(f"{prepared.name}: cancelled by `ute cancel {job_id}`")
                if paused != (request == control.PAUSE):
                    paused = request == control.PAUSE
                    log.info("%s: %s", prepared.name, f"paused: queued chunks wait for `ute resume {job_id}`"
                             if paused else "resumed")  # fmt: skip
                if paused or not disks.check():
                    control.take_off_queue(connection, prepared.file_id, len(prepared.chunks),
                                           stop_running=False)  # fmt: skip
                    bar.update(task, fps="paused")
                    time.sleep(backoff.pause)
                    continue
                progress = _check_chunks(connection, prepared, watchdog)
                disks.chunks_found_no_space(watchdog.no_space)
                if backoff.answered():
                    watchdog.hold()  # heartbeats lapsed while Redis was out
            except redis.exceptions.RedisError as error:
                if not backoff.unavailable(error):
                    raise
                time.sleep(backoff.pause)
                continue
            bar.update(task, completed=progress.frames_done, fps=f"{progress.fps:.1f} fps",
                       chunks=f"{progress.chunks_done}/{progress.chunks_total} chunks")  # fmt: skip
            if progress.complete:
                return
            time.sleep(backoff.pause)


def _check_chunks(
    connection: redis.Redis, prepared: pipeline.PreparedFile, watchdog: monitor.ChunkMonitor
) -> ChunkProgress:
    """One look at the file's chunks: resubmit lost jobs, requeue dead ones, stop on failure."""
    progress, jobs = pipeline.check_chunks(connection, prepared, state.QUEUE_LOW)
    if progress.failure:
        raise EncodeError(f"{prepared.name}: {progress.failure}")
    watchdog.sweep(jobs)
    return progress


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
