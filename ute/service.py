"""`ute serve`: takes complete files from the inbox, queues their chunks, finishes them in order.

Everything the service knows can be rebuilt from the disk and Redis: after a crash, the files
still in the inbox are taken again, their finished chunks (jobs and segments) are kept, and only
what is missing is queued again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ute import monitor, pipeline, runner, state, submit
from ute.errors import UteError
from ute.history import HISTORY_FILE_NAME, OUTCOME_DONE, OUTCOME_FAILED, History, HistoryEntry
from ute.inbox import Arrival, InboxLayout, InboxWatcher, Refusal, unused_name
from ute.localworkers import local_workers
from ute.pipeline import PreparedFile
from ute.progress import read_progress
from ute.redis_server import private_redis
from ute.settings import EncodeSettings
from ute.verify import Verified

log = logging.getLogger(__name__)

DEFAULT_SETTLE_SECONDS = 5.0
DEFAULT_STALL_SECONDS = 120.0
DONE_ACTIONS = ("move", "delete", "keep")
POLL_SECONDS = 0.5
MONITOR_EVERY_SECONDS = 1.0
FINALIZE_THREADS = 2
# A fixed port, so that remote workers find the private Redis again after a restart.
DEFAULT_REDIS_PORT = 6479


@dataclass(frozen=True)
class ServeOptions:
    inbox: Path
    outbox: Path
    work_root: Path
    settings: EncodeSettings
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    stall_seconds: float = DEFAULT_STALL_SECONDS
    done_action: str = "move"


@dataclass
class ActiveFile:
    source: Path
    queue: str
    prepared: PreparedFile
    started_at: float = field(default_factory=time.time)
    output: Path | None = None
    finalizing: Future[Verified] | None = None


def serve(
    options: ServeOptions,
    *,
    workers: int,
    redis_url: str | None,
    redis_port: int = DEFAULT_REDIS_PORT,
    redis_bind: str = "127.0.0.1",
    stop: threading.Event | None = None,
    abort: threading.Event | None = None,
) -> None:
    """Run the service until stop is set, then coast down (finish running chunks) unless abort
    is set too. The CLI sets stop on the first SIGTERM or Ctrl-C and abort on the second."""
    stop, abort = stop or threading.Event(), abort or threading.Event()
    InboxLayout(options.inbox).create()
    options.outbox.mkdir(parents=True, exist_ok=True)
    options.work_root.mkdir(parents=True, exist_ok=True)
    history = History(options.work_root / HISTORY_FILE_NAME)
    with contextlib.ExitStack() as stack:
        if not redis_url:
            redis_url = stack.enter_context(
                private_redis(options.work_root / "redis", host=redis_bind, port=redis_port)
            )
            if redis_bind not in ("127.0.0.1", "localhost", "::1"):
                log.warning("Redis listens on %s without a password: only do this on a network "
                            "you trust", redis_bind)  # fmt: skip
        log.info("Redis: %s  (remote workers: ute-worker --redis-url %s)", redis_url, redis_url)
        processes = stack.enter_context(local_workers(redis_url, workers, options.work_root / "logs"))
        service = Service(options, state.connect(redis_url), history)
        coasting = False

        def coasted_down() -> bool:
            """After the first stop signal: local workers finish their chunks, then we leave."""
            nonlocal coasting
            if abort.is_set():
                return True
            if not coasting:
                coasting = True
                log.info("coasting down: local workers finish their chunks (stop again to abort)")
                runner.stop(processes, grace_seconds=0, wait=False)
            return all(process.poll() is not None for process in processes)

        service.run(stop, until=coasted_down)
        if abort.is_set():
            log.info("aborting: running chunks are stopped and go back to their queue")
            runner.stop(processes, grace_seconds=30, cold=True)


class Service:
    def __init__(self, options: ServeOptions, connection: redis.Redis, history: History) -> None:
        self.options = options
        self.connection = connection
        self.history = history
        self.layout = InboxLayout(options.inbox)
        self.watcher = InboxWatcher(self.layout, options.settle_seconds, options.stall_seconds)
        self.active: dict[Path, ActiveFile] = {}  # in arrival order
        self.finalizers = ThreadPoolExecutor(FINALIZE_THREADS, thread_name_prefix="ute-finalize")
        self.monitor = monitor.ChunkMonitor(connection)
        self._last_monitor = 0.0

    def run(self, stop: threading.Event, *, until: Callable[[], bool] | None = None) -> None:
        """Step until stop is set; then, if until is given, keep finishing work until it is true.

        A Redis that goes away is waited for with growing pauses, never a crash.
        """
        self.watcher.start()
        log.info("watching %s (high priority: %s)", self.layout.root, self.layout.high)
        pause = POLL_SECONDS
        try:
            while not (until() if stop.is_set() and until else stop.is_set()):
                try:
                    self.step(take_new_files=not stop.is_set())
                    pause = POLL_SECONDS
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                    log.warning("Redis is unreachable (%s); trying again in %.0f s", error, pause)
                    pause = min(pause * 2, state.REDIS_RETRY_MAX_SECONDS)
                time.sleep(pause)
        finally:
            self.watcher.stop()
            self.finalizers.shutdown(wait=False, cancel_futures=True)

    def step(self, *, take_new_files: bool = True) -> None:
        for event in self.watcher.poll() if take_new_files else []:
            try:
                if isinstance(event, Arrival):
                    self._take(event)
                else:
                    self._refuse(event)
            except redis.exceptions.RedisError:
                self.watcher.release(event.path)  # offered again once Redis is back
                raise
        for active in list(self.active.values()):
            self._advance(active)
        now = time.monotonic()
        if now - self._last_monitor >= MONITOR_EVERY_SECONDS:
            self._last_monitor = now
            encoding = [a for a in self.active.values() if a.finalizing is None]
            job_ids = [job_id for a in encoding for job_id in state.current_chunk_job_ids(
                self.connection, a.prepared.file_id, len(a.prepared.chunks))]  # fmt: skip
            self.monitor.sweep(job_ids)

    def _take(self, arrival: Arrival) -> None:
        name = arrival.path.name
        try:
            prepared = pipeline.prepare(arrival.info, self.options.settings, self.options.work_root)
        except UteError as error:
            self._refuse(Refusal(arrival.path, str(error)))
            return
        if self.history.is_done(prepared.file_id):
            log.info("%s: already encoded (same path, size and time); not encoding it again", name)
            self._dispose_source(arrival.path)
            return
        prepared.work_dir.mkdir(parents=True, exist_ok=True)
        submit.submit_chunks(self.connection, prepared.specs, arrival.queue)
        self.active[arrival.path] = ActiveFile(arrival.path, arrival.queue, prepared)
        log.info("%s: taken on queue %s: %d frames at %.3f fps, planned %d chunks", name,
                 arrival.queue, arrival.info.frame_count, arrival.info.fps, len(prepared.chunks))  # fmt: skip

    def _advance(self, active: ActiveFile) -> None:
        if active.finalizing is not None:
            if active.finalizing.done():
                self._finish(active, active.finalizing)
            return
        progress = read_progress(self.connection, active.prepared.file_id, active.prepared.chunks)
        if progress.missing:
            log.warning("%s: Redis lost %d chunk jobs; queueing them again", active.source.name,
                        len(progress.missing))  # fmt: skip
            submit.submit_chunks(self.connection, [active.prepared.specs[i] for i in progress.missing],
                                 active.queue)  # fmt: skip
        elif progress.failure:
            self._fail(active, progress.failure)
        elif progress.complete:
            stem = active.source.stem
            active.output = unused_name(self.options.outbox / f"{stem}.mkv")
            log.info("%s: all %d chunks encoded; muxing and verifying", active.source.name,
                     progress.chunks_total)  # fmt: skip
            active.finalizing = self.finalizers.submit(pipeline.finalize, active.prepared, active.output)

    def _finish(self, active: ActiveFile, finalizing: Future[Verified]) -> None:
        try:
            verified = finalizing.result()
        except Exception as error:  # any failure here fails the file, never the service
            self._fail(active, str(error))
            return
        info = active.prepared.info
        seconds = time.time() - active.started_at
        entry = HistoryEntry(
            file_id=active.prepared.file_id, source=str(active.source), outcome=OUTCOME_DONE,
            output=str(active.output), source_bytes=info.size, output_bytes=verified.size,
            frames=verified.frames, duration_seconds=verified.duration_seconds,
            encode_seconds=round(seconds, 3), fps=round(verified.frames / seconds, 2) if seconds else None,
            settings=active.prepared.settings.to_json(), queue=active.queue,
            started_at=active.started_at,
        )  # fmt: skip
        self.history.add(entry)
        log.info("%s: done in %.1f s at %.1f fps, size %+.1f%% -> %s", active.source.name, seconds,
                 entry.fps or 0, entry.size_change_percent or 0, active.output)  # fmt: skip
        self._dispose_source(active.source)
        self._forget(active)

    def _dispose_source(self, source: Path) -> None:
        """Only ever called after the output is verified (or was verified before)."""
        action = self.options.done_action
        if action == "move":
            moved = self.layout.move_to_done(source)
            log.debug("%s: source moved to %s", source.name, moved)
        elif action == "delete":
            source.unlink(missing_ok=True)
        if action != "keep":  # a kept source stays claimed, so it is not offered again
            self.watcher.release(source)

    def _refuse(self, refusal: Refusal) -> None:
        log.error("%s: refused: %s", refusal.path.name, refusal.reason)
        self.layout.move_to_failed(refusal.path, refusal.reason)
        self.history.add(HistoryEntry(file_id="", source=str(refusal.path), outcome=OUTCOME_FAILED,
                                      error=refusal.reason))  # fmt: skip
        self.watcher.release(refusal.path)

    def _fail(self, active: ActiveFile, reason: str) -> None:
        submit.clear_chunks(self.connection, active.prepared.file_id, len(active.prepared.chunks))
        log.error("%s: failed: %s", active.source.name, reason)
        self.layout.move_to_failed(active.source, reason)
        info = active.prepared.info
        self.history.add(HistoryEntry(
            file_id=active.prepared.file_id, source=str(active.source), outcome=OUTCOME_FAILED,
            error=reason, source_bytes=info.size, frames=info.frame_count,
            duration_seconds=info.duration_seconds, settings=active.prepared.settings.to_json(),
            queue=active.queue, started_at=active.started_at,
        ))  # fmt: skip
        self.watcher.release(active.source)
        self._forget(active)

    def _forget(self, active: ActiveFile) -> None:
        self.active.pop(active.source, None)
        shutil.rmtree(active.prepared.work_dir, ignore_errors=True)
