"""`ute serve`'s files: takes complete files from the inbox and hands them to the driver, which
moves each through its lifecycle; what a finished, failed or cancelled file means for the inbox,
the outbox and the history is decided here.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import redis

from ute import chunklogs, config, control, farm, pipeline, plugins, state
from ute.chunkserver import ChunkServer
from ute.defaults import DEFAULT_PLUGIN_TIMEOUT_SECONDS, DEFAULT_SETTLE_SECONDS, DEFAULT_STALL_SECONDS
from ute.driver import Driver, FileRun, keep_going_until
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
from ute.lifecycle import FileState
from ute.pipeline import PreparedFile
from ute.probe import probe
from ute.settings import EncodeSettings
from ute.verify import Verified

log = logging.getLogger(__name__)

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
    plugin_timeout: float = DEFAULT_PLUGIN_TIMEOUT_SECONDS
    full_verify: bool = False  # decode the whole output too (`--verify full`)


class InboxFiles:
    def __init__(self, options: ServeOptions, connection: redis.Redis, history: History,
                 chunk_server: ChunkServer | None = None) -> None:  # fmt: skip
        self.options = options
        self.connection = connection
        self.history = history
        self.layout = InboxLayout(options.inbox)
        self.watcher = InboxWatcher(self.layout, options.settle_seconds, options.stall_seconds)
        self.cancelled_sources: dict[Path, str] = {}  # left in the inbox by `ute cancel`: their ids
        self.helpers = ThreadPoolExecutor(HELPER_THREADS, thread_name_prefix="ute-file")
        disks = farm.DiskGuard(connection, [options.work_root, options.outbox])
        self.driver = Driver(connection, self, disks, self.helpers, chunk_server)

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
        try:
            self.driver.run(keep_going_until(stop, until),
                            before_step=lambda: self._take_new_files(not stop.is_set()),
                            supervise=None if supervise is None else (
                                lambda: None if stop.is_set() else supervise()))  # fmt: skip
        finally:
            self.watcher.stop()
            self.helpers.shutdown(wait=False, cancel_futures=True)

    def finishing(self) -> bool:
        """Whether a file is being muxed, verified or post-processed right now."""
        return self.driver.finishing()

    def _take_new_files(self, take: bool) -> None:
        for event in self.watcher.poll() if take and self.driver.room else []:
            try:
                if isinstance(event, Arrival):
                    self._take(event)
                else:
                    self._refuse(event)
            except redis.exceptions.RedisError:
                self.watcher.release(event.path)  # offered again once Redis is back
                raise
        self._retry_cancelled()

    def _take(self, arrival: Arrival) -> None:
        info = arrival.info
        file_id = state.fingerprint(info.path, info.size, info.mtime_ns)
        latest = self.history.latest(file_id)
        outcome = latest.outcome if latest else None
        if outcome == OUTCOME_DONE:
            log.info("%s: already encoded (same path, size and time); not encoding it again",
                     arrival.path.name)  # fmt: skip
            self._dispose_source(arrival.path)
            return
        if outcome == OUTCOME_CANCELLED:  # stays where it is until `ute retry`
            self.cancelled_sources[arrival.path] = file_id
            state.finish_file_record(self.connection, file_id, OUTCOME_CANCELLED, source=str(arrival.path))
            return
        run = FileRun(file_id, arrival.path, arrival.queue)
        if latest and outcome == OUTCOME_VERIFIED:
            if _output_intact(latest):
                log.info("%s: its output %s was verified before UTE stopped; running the post plugins",
                         arrival.path.name, latest.output)  # fmt: skip
                run.state, run.output = FileState.FINISHING, Path(latest.output or "")
                run.started_at = latest.started_at or run.started_at
                run.finishing = self.helpers.submit(self._run_post, run, latest)
                self.driver.add(run, frames_total=info.frame_count)
                return
            log.warning("%s: the output %s of an earlier run is gone or changed; encoding it again",
                        arrival.path.name, latest.output)  # fmt: skip
        log.info("%s: taken for queue %s (%d frames at %.3f fps)", arrival.path.name, arrival.queue,
                 info.frame_count, info.fps)  # fmt: skip
        self.driver.add(run, partial(self._prepare, run, arrival), frames_total=info.frame_count)

    def _prepare(self, run: FileRun, arrival: Arrival) -> PreparedFile:
        """Settings from the file's TOML files, then the pre plugins and their overrides, then the plan."""
        settings = config.apply(self.options.settings, config.file_layers(arrival.path))
        pre = plugins.StageResult()
        if self.options.plugins_dir:
            pre_dir = self.options.work_root / f"pre-{run.file_id}"
            pre = plugins.run_pre(self.options.plugins_dir, file_id=run.file_id, source=arrival.path,
                                  work_dir=pre_dir, timeout=self.options.plugin_timeout)  # fmt: skip
            shutil.rmtree(pre_dir, ignore_errors=True)
        run.log_lines += pre.log_lines
        if pre.overrides:
            settings = config.apply(settings, [pre.overrides])
        info = arrival.info
        stat = arrival.path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (info.size, info.mtime_ns):
            info = probe(arrival.path)  # a pre plugin changed the file
        prepared = pipeline.prepare(info, settings, self.options.work_root)
        prepared.work_dir.mkdir(parents=True, exist_ok=True)
        settings = prepared.settings
        log.info("%s: planned %d chunks (crf %g, preset %s%s%s)", run.name, len(prepared.chunks),
                 settings.crf, settings.preset, f", crop {settings.crop}" if settings.crop else "",
                 f", x265 {settings.x265_params}" if settings.x265_params else "")  # fmt: skip
        return prepared

    # The driver's Owner: what finishing, done, failed and cancelled mean for `ute serve`.

    def finish_work(self, run: FileRun) -> Callable[[], HistoryEntry]:
        assert run.prepared is not None
        # Several files can be muxed at once: a name another one has claimed is taken too.
        claimed = {other.output for other in self.driver.runs.values() if other.output}
        run.output = unused_name(self.options.outbox / f"{run.source.stem}.mkv", claimed)
        chunk_log = chunklogs.render_all(chunklogs.collect(self.connection, run.prepared.work_id,
                                                           len(run.prepared.chunks)))  # fmt: skip
        return partial(self._finalize, run, run.prepared, run.output, chunk_log)

    def _finalize(self, run: FileRun, prepared: PreparedFile, output: Path, chunk_log: str) -> HistoryEntry:
        """Mux and verify; record that in the history before the output takes its name (a restart
        resumes from there), drop the segments, then run the post plugins."""
        recorded: list[HistoryEntry] = []

        def record(verified: Verified) -> None:
            seconds = time.time() - run.started_at
            recorded.append(HistoryEntry(
                file_id=run.file_id, source=str(run.source), outcome=OUTCOME_VERIFIED,
                output=str(output), source_bytes=prepared.info.size, output_bytes=verified.size,
                frames=verified.frames, duration_seconds=verified.duration_seconds,
                encode_seconds=round(seconds, 3),
                fps=round(verified.frames / seconds, 2) if seconds else None,
                settings=prepared.settings.to_json(), queue=run.queue, started_at=run.started_at,
                log="\n".join([*run.log_lines, chunk_log]),
            ))  # fmt: skip
            self.history.add(recorded[0])

        pipeline.finalize(prepared, output, before_rename=record, full_verify=self.options.full_verify,
                          samples=run.sampling)  # fmt: skip
        shutil.rmtree(prepared.work_dir, ignore_errors=True)
        return self._run_post(run, recorded[0])

    def _run_post(self, run: FileRun, verified: HistoryEntry) -> HistoryEntry:
        post, output = plugins.StageResult(), Path(verified.output or "")
        if self.options.plugins_dir:
            post = plugins.run_post(self.options.plugins_dir, file_id=run.file_id, source=run.source,
                                    output=output, timeout=self.options.plugin_timeout)  # fmt: skip
        log_text = "\n".join([verified.log, *post.log_lines])
        return replace(verified, outcome=OUTCOME_DONE, finished_at=time.time(),
                       warnings=post.warnings, log=log_text)  # fmt: skip

    def done(self, run: FileRun) -> None:
        entry: HistoryEntry = run.result
        self.history.add(entry)
        log.info("%s: done in %.1f s at %.1f fps, size %+.1f%% -> %s", run.name, entry.encode_seconds or 0,
                 entry.fps or 0, entry.size_change_percent or 0, entry.output)  # fmt: skip
        self._dispose_source(run.source)
        _drop_work(run)

    def failed(self, run: FileRun) -> None:
        reason, prepared = run.error or "unknown", run.prepared
        log.error("%s: failed: %s", run.name, reason)
        self.history.add(HistoryEntry(
            file_id=run.file_id, source=str(run.source), outcome=OUTCOME_FAILED, error=reason,
            source_bytes=prepared.info.size if prepared else None,
            frames=prepared.info.frame_count if prepared else None,
            duration_seconds=prepared.info.duration_seconds if prepared else None,
            settings=prepared.settings.to_json() if prepared else {},
            queue=run.queue, started_at=run.started_at, log="\n".join(run.log_lines),
        ))  # fmt: skip
        self.layout.move_to_failed(run.source, reason, run.file_id)
        self.watcher.release(run.source)
        _drop_work(run)

    def cancelled(self, run: FileRun) -> None:
        """`ute cancel`: its chunks are stopped, its work folder goes, the source stays where it is."""
        log.info("%s: cancelled; the source stays in place (`ute retry %s` encodes it again)",
                 run.name, run.file_id)  # fmt: skip
        self.history.add(HistoryEntry(file_id=run.file_id, source=str(run.source), outcome=OUTCOME_CANCELLED,
                                      queue=run.queue, started_at=run.started_at))  # fmt: skip
        self.cancelled_sources[run.source] = run.file_id
        _drop_work(run)

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

    def _retry_cancelled(self) -> None:
        for source, file_id in list(self.cancelled_sources.items()):
            if state.file_control(self.connection, file_id) == control.RETRY:
                log.info("%s: retry requested; taking it again", source.name)
                self.history.add(HistoryEntry(file_id=file_id, source=str(source), outcome=OUTCOME_RETRIED))
                state.save_file_record(self.connection, file_id, control="")
                del self.cancelled_sources[source]
                self.watcher.release(source)


def _drop_work(run: FileRun) -> None:
    if run.prepared:
        shutil.rmtree(run.prepared.work_dir, ignore_errors=True)


def _output_intact(verified: HistoryEntry) -> bool:
    """The output recorded as verified is still there, with the size it had then."""
    if not verified.output:
        return False
    output = Path(verified.output)
    return output.is_file() and output.stat().st_size == verified.output_bytes
