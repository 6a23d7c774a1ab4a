"""`ute encode`: one file through the whole swarm path (probe, plan, queue, wait, mux, verify)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ute import config, encode_start, farm, pipeline, state, submit
from ute.chunkserver import chunk_server
from ute.defaults import WORK_DIR_NAME
from ute.driver import Driver, FileRun
from ute.encode_start import LocalSwarm
from ute.errors import EncodeError, StoppedError, UteError
from ute.lifecycle import Action, FileState
from ute.localworkers import wait_until_registered
from ute.logsetup import console, on_terminal
from ute.probe import probe
from ute.settings import EncodeSettings
from ute.transfer import ServerOptions
from ute.verify import Verified

log = logging.getLogger(__name__)


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


def encode_file(
    source: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    workers: int,
    redis_url: str | None,
    force: bool = False,
    stop: threading.Event | None = None,
    full_verify: bool = False,
    network: ServerOptions | None = None,
    swarm: LocalSwarm | None = None,
) -> EncodeReport:
    """Encode source into output through rq workers; raise UteError unless verified. Once stop is
    set, queued chunks leave the queue, local workers finish their running ones, and StoppedError
    says how to resume. swarm: the private Redis and local workers encode_start.start started
    with the same arguments (`ute encode` starts them before it imports this module), else
    started here."""
    source, output = source.absolute(), output.absolute()
    swarm = swarm or encode_start.start(source, output, force=force, workers=workers, redis_url=redis_url)
    finished = done = False
    try:
        settings = config.apply(settings, config.file_layers(source))
        prepared = pipeline.prepare(probe(source), settings, output.parent / WORK_DIR_NAME)
        prepared.work_dir.mkdir(parents=True, exist_ok=True)
        swarm.work_dir = prepared.work_dir
        run = _encode(prepared, swarm, source, output, stop or threading.Event(), force=force,
                      full_verify=full_verify, network=network or ServerOptions())  # fmt: skip
        finished, done = True, run.state is FileState.DONE
    finally:
        swarm.stop(cold=not finished)
        swarm.clear_away(keep_logs=not done)
    if run.state is FileState.FAILED:
        raise EncodeError(f"{prepared.name}: {run.error}")
    if run.state is FileState.CANCELLED:
        raise CancelledError(f"{prepared.name}: cancelled by `ute cancel {run.file_id}`")
    if run.state is not FileState.DONE:
        raise StoppedError(f"{prepared.name}: stopped; finished chunks are kept in {prepared.work_dir}, "
                           "run the same command again to go on from there")  # fmt: skip
    shutil.rmtree(prepared.work_dir, ignore_errors=True)
    _remove_if_empty(prepared.work_dir.parent)
    verified: Verified = run.result
    return EncodeReport(source, output, verified.frames, len(prepared.chunks),
                        time.monotonic() - swarm.started_at, prepared.info.size, verified.size)  # fmt: skip


def _encode(
    prepared: pipeline.PreparedFile, swarm: LocalSwarm, source: Path, output: Path, stop: threading.Event, *,
    force: bool, full_verify: bool, network: ServerOptions,
) -> FileRun:  # fmt: skip
    """Queue the file's chunks and drive it until it ends or stop is set; its run, as it ended."""
    info = prepared.info
    log.info("%s: %d frames at %.3f fps, %d chunks (id %s)", prepared.name, info.frame_count, info.fps,
             len(prepared.chunks), prepared.file_id)  # fmt: skip
    if swarm.private_redis is not None:
        log.info("a private Redis listens at %s", swarm.url)
    run = FileRun(prepared.file_id, source, state.QUEUE_LOW, output=output)
    connection = state.connect(swarm.url)
    local = swarm.workers
    if local:
        wait_until_registered(connection, swarm.names, local, swarm.logs_folder)
    with contextlib.ExitStack() as stack:
        helpers = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="ute-file"))
        show_progress = stack.enter_context(_progress_bar(prepared))
        # Its secret in the file's own work folder: it outlives an interrupted run, not a finished one.
        server = stack.enter_context(chunk_server(connection, swarm.url, prepared.work_dir, network))
        submit.clear_chunks(connection, prepared.work_id, len(prepared.chunks))  # an earlier run's
        if not local:
            log.info("waiting for workers: start `ute-worker --redis-url %s` on any machine",
                     state.redacted(swarm.url))  # fmt: skip
        disks = farm.DiskGuard(connection, [prepared.work_dir, output.parent])
        driver = Driver(connection, _OneFile(force, full_verify), disks, helpers, server)
        driver.add(run, lambda: prepared, frames_total=info.frame_count)

        def before_step() -> None:
            if local and all(process.poll() is not None for process in local):
                raise EncodeError(f"every local worker has exited; see their logs in {swarm.logs_folder}")
            show_progress(run)

        def keep_going() -> bool:  # a file being muxed is finished, stop or not, as in `ute serve`
            return not run.state.terminal and (not stop.is_set() or run.state is FileState.FINISHING)

        try:
            driver.run(keep_going, before_step=before_step)
        finally:
            if not run.state.terminal:  # stopped, interrupted, or a failure of UTE's own
                _put_chunks_down(driver, run, stopped=stop.is_set())
    return run


class _OneFile:
    """The driver's Owner for `ute encode`: the output is the one given; a failure is raised by
    encode_file once the driver is done; the source is never touched."""

    def __init__(self, force: bool, full_verify: bool) -> None:
        self.force = force
        self.full_verify = full_verify

    def finish_work(self, run: FileRun) -> Callable[[], Verified]:
        assert run.prepared is not None and run.output is not None
        return partial(pipeline.finalize, run.prepared, run.output, replace=self.force,
                       full_verify=self.full_verify, samples=run.sampling)  # fmt: skip

    def done(self, run: FileRun) -> None:
        pass

    def failed(self, run: FileRun) -> None:
        pass

    def cancelled(self, run: FileRun) -> None:
        pass


def _put_chunks_down(driver: Driver, run: FileRun, *, stopped: bool) -> None:
    """No chunk of a run that ends unfinished is left to remote workers. After a stop signal the
    local workers finish their running chunks first (their segments are kept for the next run)."""
    with contextlib.suppress(redis.exceptions.RedisError):
        if stopped:
            driver.carry_out(run, Action.HOLD_CHUNKS)
        else:
            driver.carry_out(run, Action.STOP_CHUNKS, Action.CLEAR_CHUNKS)
        state.finish_file_record(driver.connection, run.file_id, FileState.FAILED, control="",
                                 error="stopped" if stopped else "interrupted")  # fmt: skip


class CancelledError(UteError):
    """`ute cancel` was asked for the file this run encodes."""


@contextlib.contextmanager
def _progress_bar(prepared: pipeline.PreparedFile) -> Iterator[Callable[[FileRun], None]]:
    """A bar of frames done, chunks, fps and time left, drawn only on a terminal."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} frames"),
        TextColumn("{task.fields[chunks]}"),
        TextColumn("{task.fields[fps]}"),
        TimeRemainingColumn(),
        console=console(),
        disable=not on_terminal(),
    ) as bar:
        task = bar.add_task(prepared.name, total=prepared.info.frame_count, chunks="", fps="")

        def show(run: FileRun) -> None:
            progress = run.progress
            if run.state is FileState.PAUSED:
                bar.update(task, fps="paused")
            elif progress is not None:
                bar.update(task, completed=progress.frames_done, fps=f"{progress.fps:.1f} fps",
                           chunks=f"{progress.chunks_done}/{progress.chunks_total} chunks")  # fmt: skip

        yield show


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
