"""The loop of `ute serve`: takes complete files from the inbox, queues their chunks, finishes
them in order.

Everything the service knows can be rebuilt from the disk, Redis and the history: after a crash,
the files still in the inbox are taken again, their finished chunks (jobs and segments) are kept,
and only what is missing is queued again; a file whose output was already verified only runs its
post plugins.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis
from rq.job import Job

from ute import chunklogs, config, control, farm, monitor, pipeline, plugins, state, submit
from ute.defaults import DEFAULT_SETTLE_SECONDS, DEFAULT_STALL_SECONDS
from ute.errors import UteError
from ute.history import (
    OUTCOME_CANCELLED,
    OUTCOME_DONE,
    OUTCOME_FAILED,
    OUTCOME_RETRIED,
    OUTCOME_VERIFIED,
    History,
    HistoryEntry,
)
from ute.inbox import Arrival, InboxLayout, InboxWatcher, Refusal, unused_name
from ute.pipeline import PreparedFile
from ute.probe import probe
from ute.settings import EncodeSettings
from ute.verify import Verified

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MONITOR_EVERY_SECONDS = 1.0
HELPER_THREADS = 4


@dataclass(frozen=True)
class ServeOptions:
    inbox: Path
    outbox: Path
    work_root: Path
    settings: EncodeSettings
    plugins_dir: Path | None = None
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    stall_seconds: float = DEFAULT_STALL_SECONDS
    done_action: str = "move"
    plugin_timeout: float = plugins.DEFAULT_PLUGIN_TIMEOUT_SECONDS


@dataclass
class ActiveFile:
    """A file the service has taken: preparing (settings, pre plugins, plan), then encoding,
    then finalizing (mux, verify, post plugins: its history entry). A file whose output was
    verified before a restart goes straight to finalizing."""

    source: Path
    queue: str
    job_id: str  # the file's id (path, size, mtime): UTE_JOB_ID for plugins
    preparing: Future[tuple[PreparedFile, plugins.StageResult]] | None
    prepared: PreparedFile | None = None
    started_at: float = field(default_factory=time.time)
    finalizing: Future[HistoryEntry] | None = None
    output: Path | None = None  # the name claimed for its output while it is finalized
    log_lines: list[str] = field(default_factory=list)


class Service:
    def __init__(self, options: ServeOptions, connection: redis.Redis, history: History) -> None:
        self.options = options
        self.connection = connection
        self.history = history
        self.layout = InboxLayout(options.inbox)
        self.watcher = InboxWatcher(self.layout, options.settle_seconds, options.stall_seconds)
        self.active: dict[Path, ActiveFile] = {}  # in arrival order
        self.cancelled: dict[Path, str] = {}  # sources left in the inbox by `ute cancel`
        # Pre plugins, muxing and verifying take seconds to minutes: never in the service loop.
        self.helpers = ThreadPoolExecutor(HELPER_THREADS, thread_name_prefix="ute-file")
        self.monitor = monitor.ChunkMonitor(connection)
        self.disks = farm.DiskGuard(connection, [options.work_root, options.outbox])
        self._last_monitor = 0.0

    def run(
        self, stop: threading.Event, *, until: Callable[[], bool] | None = None,
        supervise: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """Step until stop is set; then, if until is given, keep finishing work until it is true.
        supervise, if given, runs before each step until stop is set (restarting helpers).

        A Redis that goes away is waited for with growing pauses, never a crash.
        """
        self.watcher.start()
        log.info("watching %s (high priority: %s)", self.layout.root, self.layout.high)
        backoff = farm.RedisBackoff(POLL_SECONDS)
        try:
            while not (until() if stop.is_set() and until else stop.is_set()):
                if supervise and not stop.is_set():
                    supervise()
                try:
                    self.step(take_new_files=not stop.is_set())
                    if backoff.answered():
                        self.monitor.hold()  # heartbeats lapsed while Redis was out
                except redis.exceptions.RedisError as error:
                    if not backoff.unavailable(error):
                        raise
                time.sleep(backoff.pause)
        finally:
            self.watcher.stop()
            self.helpers.shutdown(wait=False, cancel_futures=True)

    def finalizing(self) -> bool:
        """Whether a file is being muxed, verified or post-processed right now."""
        return any(active.finalizing is not None for active in self.active.values())

    def step(self, *, take_new_files: bool = True) -> None:
        room = self.disks.check()
        for event in self.watcher.poll() if take_new_files and room else []:
            try:
                if isinstance(event, Arrival):
                    self._take(event)
                else:
                    self._refuse(event)
            except redis.exceptions.RedisError:
                self.watcher.release(event.path)  # offered again once Redis is back
                raise
        self._retry_cancelled()
        blocked_queues: set[str] = set()  # files are queued in arrival order, per queue
        encoding_jobs: list[Job | None] = []
        for active in list(self.active.values()):
            request = state.file_control(self.connection, active.job_id)
            if request == control.CANCEL and not active.finalizing:
                self._cancel(active)
            elif (request == control.PAUSE or not room) and not active.finalizing:
                # Running chunks finish; queued ones leave the queue; the monitor leaves it alone.
                if active.prepared:
                    control.take_off_queue(self.connection, active.prepared.file_id,
                                           len(active.prepared.chunks), stop_running=False)  # fmt: skip
            else:
                encoding_jobs += self._advance(active, blocked_queues)
        now = time.monotonic()
        if now - self._last_monitor >= MONITOR_EVERY_SECONDS:
            self._last_monitor = now
            self.monitor.sweep(encoding_jobs)
            self.disks.chunks_found_no_space(self.monitor.no_space)

    def _take(self, arrival: Arrival) -> None:
        info = arrival.info
        job_id = state.fingerprint(info.path, info.size, info.mtime_ns)
        latest = self.history.latest(job_id)
        outcome = latest.outcome if latest else None
        if outcome == OUTCOME_DONE:
            log.info("%s: already encoded (same path, size and time); not encoding it again",
                     arrival.path.name)  # fmt: skip
            self._dispose_source(arrival.path)
            return
        if outcome == OUTCOME_CANCELLED:  # stays where it is until `ute retry`
            self.cancelled[arrival.path] = job_id
            state.finish_file_record(self.connection, job_id, OUTCOME_CANCELLED, source=str(arrival.path))
            return
        state.save_file_record(self.connection, job_id, source=str(arrival.path), state="queued",
                               queue=arrival.queue, frames_total=info.frame_count)  # fmt: skip
        if latest and outcome == OUTCOME_VERIFIED:
            if _output_intact(latest):
                self._resume_verified(arrival, latest)
                return
            log.warning("%s: the output %s of an earlier run is gone or changed; encoding it again",
                        arrival.path.name, latest.output)  # fmt: skip
        log.info("%s: taken for queue %s (%d frames at %.3f fps)", arrival.path.name, arrival.queue,
                 info.frame_count, info.fps)  # fmt: skip
        preparing = self.helpers.submit(self._prepare, arrival, job_id)
        self.active[arrival.path] = ActiveFile(arrival.path, arrival.queue, job_id, preparing)

    def _resume_verified(self, arrival: Arrival, verified: HistoryEntry) -> None:
        """UTE stopped after the output was verified: only the post plugins are left to run."""
        log.info("%s: its output %s was verified before UTE stopped; running the post plugins",
                 arrival.path.name, verified.output)  # fmt: skip
        active = ActiveFile(arrival.path, arrival.queue, verified.file_id, preparing=None,
                            started_at=verified.started_at or time.time())  # fmt: skip
        active.finalizing = self.helpers.submit(self._run_post, active, verified)
        state.save_file_record(self.connection, active.job_id, state="muxing")
        self.active[arrival.path] = active

    def _prepare(self, arrival: Arrival, job_id: str) -> tuple[PreparedFile, plugins.StageResult]:
        """Settings from the file's TOML files, then the pre plugins and their overrides, then the plan."""
        settings = config.apply(self.options.settings, config.file_layers(arrival.path))
        pre = plugins.StageResult()
        if self.options.plugins_dir:
            pre_dir = self.options.work_root / f"pre-{job_id}"
            pre = plugins.run_pre(self.options.plugins_dir, job_id=job_id, source=arrival.path,
                                  work_dir=pre_dir, timeout=self.options.plugin_timeout)  # fmt: skip
            shutil.rmtree(pre_dir, ignore_errors=True)
        if pre.overrides:
            settings = config.apply(settings, [pre.overrides])
        info = arrival.info
        stat = arrival.path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (info.size, info.mtime_ns):
            info = probe(arrival.path)  # a pre plugin changed the file
        return pipeline.prepare(info, settings, self.options.work_root), pre

    def _advance(self, active: ActiveFile, blocked_queues: set[str]) -> list[Job | None]:
        """Move the file one step on; return its chunk jobs while it is still encoding."""
        if active.finalizing is not None:
            if active.finalizing.done():
                self._finish(active, active.finalizing)
            return []
        if active.prepared is None:
            assert active.preparing is not None
            if not active.preparing.done() or active.queue in blocked_queues:
                blocked_queues.add(active.queue)
            else:
                self._start_encoding(active)
            return []
        prepared = active.prepared
        progress, jobs = pipeline.check_chunks(self.connection, prepared, active.queue)
        if progress.missing:
            return jobs
        if progress.failure:
            self._fail(active, progress.failure)
        elif progress.complete:
            # Several files can be muxed at once: a name another one has claimed is taken too.
            claimed = {other.output for other in self.active.values() if other.output}
            output = active.output = unused_name(self.options.outbox / f"{active.source.stem}.mkv", claimed)
            chunk_log = chunklogs.render_all(chunklogs.collect(self.connection, prepared.file_id,
                                                               len(prepared.chunks)))  # fmt: skip
            log.info("%s: all %d chunks encoded; muxing and verifying", active.source.name,
                     progress.chunks_total)  # fmt: skip
            active.finalizing = self.helpers.submit(self._finalize, active, prepared, output, chunk_log)
            state.save_file_record(self.connection, active.job_id, state="muxing")
        else:
            return jobs
        return []

    def _start_encoding(self, active: ActiveFile) -> None:
        assert active.preparing is not None
        try:
            prepared, pre = active.preparing.result()
        except UteError as error:  # bad settings, a refusing pre plugin, a vanished file
            self._fail(active, str(error))
            return
        except OSError as error:
            self._fail(active, f"{active.source}: {error.strerror or error}")
            return
        active.log_lines += pre.log_lines
        prepared.work_dir.mkdir(parents=True, exist_ok=True)
        submit.submit_chunks(self.connection, prepared.file_spec, prepared.specs, active.queue)
        state.save_file_record(self.connection, active.job_id, state="encoding", file_id=prepared.file_id,
                               chunk_frames=[c.frames for c in prepared.chunks])  # fmt: skip
        active.prepared = prepared
        settings = prepared.settings
        log.info("%s: planned %d chunks (crf %g, preset %s%s%s)", active.source.name, len(prepared.chunks),
                 settings.crf, settings.preset, f", crop {settings.crop}" if settings.crop else "",
                 f", x265 {settings.x265_params}" if settings.x265_params else "")  # fmt: skip

    def _finalize(
        self, active: ActiveFile, prepared: PreparedFile, output: Path, chunk_log: str
    ) -> HistoryEntry:
        """Mux and verify; record that in the history before the output takes its name (a restart
        resumes from there), drop the segments, then run the post plugins."""
        recorded: list[HistoryEntry] = []

        def record(verified: Verified) -> None:
            seconds = time.time() - active.started_at
            recorded.append(HistoryEntry(
                file_id=active.job_id, source=str(active.source), outcome=OUTCOME_VERIFIED,
                output=str(output), source_bytes=prepared.info.size, output_bytes=verified.size,
                frames=verified.frames, duration_seconds=verified.duration_seconds,
                encode_seconds=round(seconds, 3),
                fps=round(verified.frames / seconds, 2) if seconds else None,
                settings=prepared.settings.to_json(), queue=active.queue, started_at=active.started_at,
                log="\n".join([*active.log_lines, chunk_log]),
            ))  # fmt: skip
            self.history.add(recorded[0])

        pipeline.finalize(prepared, output, before_rename=record)
        shutil.rmtree(prepared.work_dir, ignore_errors=True)
        return self._run_post(active, recorded[0])

    def _run_post(self, active: ActiveFile, verified: HistoryEntry) -> HistoryEntry:
        post, output = plugins.StageResult(), Path(verified.output or "")
        if self.options.plugins_dir:
            post = plugins.run_post(self.options.plugins_dir, job_id=active.job_id, source=active.source,
                                    output=output, timeout=self.options.plugin_timeout)  # fmt: skip
        log_text = "\n".join([verified.log, *post.log_lines])
        return replace(verified, outcome=OUTCOME_DONE, finished_at=time.time(),
                       warnings=post.warnings, log=log_text)  # fmt: skip

    def _finish(self, active: ActiveFile, finalizing: Future[HistoryEntry]) -> None:
        try:
            entry = finalizing.result()
        except Exception as error:  # any failure here fails the file, never the service
            self._fail(active, str(error))
            return
        self.history.add(entry)
        state.finish_file_record(self.connection, active.job_id, "done", output=str(entry.output))
        log.info("%s: done in %.1f s at %.1f fps, size %+.1f%% -> %s", active.source.name,
                 entry.encode_seconds or 0, entry.fps or 0, entry.size_change_percent or 0,
                 entry.output)  # fmt: skip
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
        self.history.add(HistoryEntry(file_id="", source=str(refusal.path), outcome=OUTCOME_FAILED,
                                      error=refusal.reason))  # fmt: skip
        self.layout.move_to_failed(refusal.path, refusal.reason)  # the source moves last, as for done
        self.watcher.release(refusal.path)

    def _fail(self, active: ActiveFile, reason: str) -> None:
        prepared = active.prepared
        if prepared:
            submit.clear_chunks(self.connection, prepared.file_id, len(prepared.chunks))
        log.error("%s: failed: %s", active.source.name, reason)
        state.finish_file_record(self.connection, active.job_id, "failed", error=reason)
        self.history.add(HistoryEntry(
            file_id=active.job_id, source=str(active.source), outcome=OUTCOME_FAILED, error=reason,
            source_bytes=prepared.info.size if prepared else None,
            frames=prepared.info.frame_count if prepared else None,
            duration_seconds=prepared.info.duration_seconds if prepared else None,
            settings=prepared.settings.to_json() if prepared else {},
            queue=active.queue, started_at=active.started_at, log="\n".join(active.log_lines),
        ))  # fmt: skip
        self.layout.move_to_failed(active.source, reason, active.job_id)
        self.watcher.release(active.source)
        self._forget(active)

    def _cancel(self, active: ActiveFile) -> None:
        """`ute cancel`: stop its chunks, drop its work folder, leave the source where it is."""
        if active.prepared:
            control.take_off_queue(self.connection, active.prepared.file_id, len(active.prepared.chunks),
                                   stop_running=True)  # fmt: skip
            submit.clear_chunks(self.connection, active.prepared.file_id, len(active.prepared.chunks))
        log.info("%s: cancelled; the source stays in place (`ute retry %s` encodes it again)",
                 active.source.name, active.job_id)  # fmt: skip
        self.history.add(HistoryEntry(file_id=active.job_id, source=str(active.source),
                                      outcome=OUTCOME_CANCELLED, queue=active.queue,
                                      started_at=active.started_at))  # fmt: skip
        state.finish_file_record(self.connection, active.job_id, OUTCOME_CANCELLED, control="")
        self.cancelled[active.source] = active.job_id
        self._forget(active)

    def _retry_cancelled(self) -> None:
        for source, job_id in list(self.cancelled.items()):
            if state.file_control(self.connection, job_id) == control.RETRY:
                log.info("%s: retry requested; taking it again", source.name)
                self.history.add(HistoryEntry(file_id=job_id, source=str(source), outcome=OUTCOME_RETRIED))
                state.save_file_record(self.connection, job_id, control="")
                del self.cancelled[source]
                self.watcher.release(source)

    def _forget(self, active: ActiveFile) -> None:
        self.active.pop(active.source, None)
        if active.prepared:
            shutil.rmtree(active.prepared.work_dir, ignore_errors=True)


def _output_intact(verified: HistoryEntry) -> bool:
    """The output recorded as verified is still there, with the size it had then."""
    if not verified.output:
        return False
    output = Path(verified.output)
    return output.is_file() and output.stat().st_size == verified.output_bytes
