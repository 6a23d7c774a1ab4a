"""The one driver of files through ute.lifecycle, for `ute encode` (one file) and `ute serve` (the
inbox's files): it looks at each file (its Redis record's requests, its helper threads, its
chunks), turns what it sees into an event, and runs the actions the transition names. What
differs between the two commands (where the output goes, what a failure does to the source, the
history) is the Owner's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis
from rq.job import Job

from ute import control, farm, monitor, pipeline, state, submit
from ute.chunkserver import ChunkServer, Offered
from ute.lifecycle import Action, Event, FileState, transition
from ute.pipeline import PreparedFile
from ute.progress import ChunkLook, ChunkProgress

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MONITOR_EVERY_SECONDS = 1.0


@dataclass
class FileRun:
    """One file on its way: where it is in its lifecycle, and what it has got so far."""

    file_id: str  # the one id a user sees: `ute status`, `ute logs ID`, `ute pause ID`, the history
    source: Path
    queue: str
    state: FileState = FileState.QUEUED
    preparing: Future[PreparedFile] | None = None
    prepared: PreparedFile | None = None
    sampling: Future[Any] | None = None  # the source's samples for the verifier
    finishing: Future[Any] | None = None
    result: Any = None  # what finishing returned
    progress: ChunkProgress | None = None
    done_chunks: set[int] = field(default_factory=set)  # found finished: not read again
    hold_when_prepared: bool = False  # HOLD_CHUNKS came before its plan (chunks queued before a restart)
    error: str | None = None
    output: Path | None = None
    started_at: float = field(default_factory=time.time)
    log_lines: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name


class Owner(Protocol):
    """What `ute encode` and `ute serve` do differently with a file."""

    def finish_work(self, run: FileRun) -> Callable[[], Any]:
        """The work of finishing the file (mux, verify, post plugins), to run in a helper thread;
        asked for in the driver's thread, so that it may claim an output name."""

    def done(self, run: FileRun) -> None: ...

    def failed(self, run: FileRun) -> None: ...

    def cancelled(self, run: FileRun) -> None: ...


class Driver:
    def __init__(self, connection: redis.Redis, owner: Owner, disks: farm.DiskGuard,
                 helpers: ThreadPoolExecutor, chunk_server: ChunkServer | None = None) -> None:  # fmt: skip
        self.connection = connection
        self.chunk_server = chunk_server  # for workers without the shared folder
        self.owner = owner
        self.disks = disks
        self.helpers = helpers  # preparing and finishing take seconds to minutes: never in the loop
        self.runs: dict[str, FileRun] = {}  # by file id, in arrival order
        self.monitor = monitor.ChunkMonitor(connection)
        self.room = True
        self._last_monitor = 0.0
        self._woken = threading.Event()  # a helper finished, a chunk ended: look now, not at the next poll
        state.register_queues(connection)  # rq-dashboard lists both from the start

    def add(self, run: FileRun, prepare: Callable[[], PreparedFile] | None = None, **record: Any) -> None:
        """Take a file on: prepare it in a helper thread (or finish it, for a run that starts
        FINISHING with its work already given)."""
        if prepare is not None:
            run.preparing = self._in_helper(prepare)
        self.runs[run.file_id] = run
        # A pause, cancel or move asked for before a restart stands.
        state.save_file_record(self.connection, run.file_id, source=str(run.source), state=run.state,
                               queue=run.queue, **record)  # fmt: skip

    def finishing(self) -> bool:
        """Whether a file is being muxed, verified or post-processed right now."""
        return any(run.state is FileState.FINISHING for run in self.runs.values())

    def run(
        self, keep_going: Callable[[], bool], *, before_step: Callable[[], None] | None = None,
        supervise: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """Step while keep_going(); before_step runs in each step (after the disks are checked),
        supervise before it, outside the wait for a Redis that went away."""
        backoff = farm.RedisBackoff(POLL_SECONDS)
        listening = _wake_on_chunk_events(self.connection, self._woken, self._is_mine)
        try:
            while keep_going():
                if supervise:
                    supervise()
                self._woken.clear()  # whatever happens from here on cuts the wait below short
                try:
                    self.step(before_step)
                    if backoff.answered():
                        self.monitor.hold()  # heartbeats lapsed while Redis was out
                except redis.exceptions.RedisError as error:
                    if not backoff.unavailable(error):
                        raise
                if keep_going():  # a file that just ended ends the run now, not after a poll
                    self._woken.wait(backoff.pause)
        finally:
            listening.clear()

    def _is_mine(self, chunk_job_id: str) -> bool:
        """Whether a chunk's job is of a file this driver runs (other coordinators may share the Redis)."""
        return state.file_id_of_chunk_job(chunk_job_id) in self.runs

    def step(self, before: Callable[[], None] | None = None) -> None:
        """One look at every file; the monitor's sweep over their chunks, once a second."""
        self.room = self.disks.check()
        if before:
            before()
        blocked_queues: set[str] = set()  # files are queued in arrival order, per queue
        jobs: list[Job] = []
        queued: list[str] = []
        requests = state.file_requests(self.connection, self.runs)  # one round trip for all files
        for run in list(self.runs.values()):
            look = self._advance(run, requests[run.file_id], blocked_queues)
            if look is not None:
                jobs += look.jobs
                queued += look.queued
        now = time.monotonic()
        if now - self._last_monitor >= MONITOR_EVERY_SECONDS:
            self._last_monitor = now
            self.monitor.sweep(jobs, queued)
            self.disks.chunks_found_no_space(self.monitor.no_space)

    def _advance(self, run: FileRun, request: tuple[str, str], blocked_queues: set[str]) -> ChunkLook | None:
        """Move the file on; while it is encoding, what a look at its chunks found. request: what
        `ute pause|resume|cancel` asked of it, and the queue `ute move` asked for."""
        control_request, move_to = request
        if move_to in state.QUEUES and move_to != run.queue:  # once: the move makes them equal
            self._move(run, move_to)
        event = self._observe(run, control_request, blocked_queues)
        if event is not None:
            self._apply(run, event)
        if run.state is not FileState.ENCODING or event is Event.NO_ROOM:  # no room: chunks held back
            return None
        return self._look_at_chunks(run)

    def _observe(self, run: FileRun, request: str, blocked_queues: set[str]) -> Event | None:
        if run.state is FileState.FINISHING:
            assert run.finishing is not None
            return self._finished(run) if run.finishing.done() else None
        if request == control.CANCEL:
            return Event.CANCEL
        if request == control.PAUSE:
            return Event.PAUSE
        if run.state is FileState.PAUSED:
            return Event.RESUME
        if not self.room:
            return Event.NO_ROOM
        if run.state is FileState.QUEUED:
            assert run.preparing is not None
            if run.queue in blocked_queues or not run.preparing.done():
                blocked_queues.add(run.queue)
                return None
            return self._prepared(run)
        return None

    def _move(self, run: FileRun, queue: str) -> None:
        log.info("%s: moved from queue %s to %s", run.name, run.queue, queue)
        run.queue = queue
        # After a restart the record holds the queue the file arrived in (Driver.add).
        state.save_file_record(self.connection, run.file_id, queue=queue)
        self._apply(run, Event.MOVE)

    def _prepared(self, run: FileRun) -> Event:
        assert run.preparing is not None
        try:
            run.prepared = run.preparing.result()
        except OSError as error:
            run.error = f"{run.source}: {error.strerror or error}"
            return Event.FAILED
        except Exception as error:  # bad settings, a refusing pre plugin: the file fails, not UTE
            run.error = str(error)
            return Event.FAILED
        return Event.PREPARED

    def _finished(self, run: FileRun) -> Event:
        assert run.finishing is not None
        try:
            run.result = run.finishing.result()
        except Exception as error:  # any failure here fails the file, never the driver
            run.error = str(error)
            return Event.FAILED
        return Event.FINISHED

    def _look_at_chunks(self, run: FileRun) -> ChunkLook | None:
        """Queue the chunks that have no job; an event once they are all done, or one failed."""
        assert run.prepared is not None
        if run.hold_when_prepared:
            run.hold_when_prepared = False
            self.carry_out(run, Action.HOLD_CHUNKS)
        self._offer(run.prepared, again=True)  # a Redis restart replays only what reached its disk
        look = pipeline.check_chunks(self.connection, run.prepared, run.queue, run.done_chunks)
        progress = run.progress = look.progress
        if progress.missing:
            return look
        if progress.failure:
            run.error = progress.failure
            self._apply(run, Event.FAILED)
        elif progress.complete:
            self._apply(run, Event.CHUNKS_DONE)
        else:
            return look
        return None

    def _apply(self, run: FileRun, event: Event) -> None:
        step = transition(run.state, event)
        changed, run.state = step.state is not run.state, step.state
        if (step.state is FileState.FINISHING or step.state.terminal) and self.chunk_server and run.prepared:
            self.chunk_server.withdraw(run.prepared.work_id)  # before its work folder may go
        if changed and step.state is FileState.PAUSED:
            log.info("%s: paused: queued chunks wait for `ute resume %s`", run.name, run.file_id)
        elif changed and event is Event.RESUME:
            log.info("%s: resumed", run.name)
        self.carry_out(run, *step.actions)
        if step.state.terminal:
            self.runs.pop(run.file_id, None)
        if changed:
            self._record(run)

    def _record(self, run: FileRun) -> None:
        """The file's state in its Redis record, for `ute status` (and what it needs to show it)."""
        fields: dict[str, Any] = {}
        if run.state is FileState.ENCODING and run.prepared is not None:
            fields = {"work_id": run.prepared.work_id,
                      "chunk_frames": [chunk.frames for chunk in run.prepared.chunks]}  # fmt: skip
        if not run.state.terminal:
            state.save_file_record(self.connection, run.file_id, state=run.state, **fields)
            return
        if run.error:
            fields["error"] = run.error
        if run.output is not None and run.state is FileState.DONE:
            fields["output"] = str(run.output)
        state.finish_file_record(self.connection, run.file_id, run.state, control="", move_to="", **fields)

    def _offer(self, prepared: PreparedFile, *, again: bool = False) -> None:
        if self.chunk_server:
            offered = Offered(Path(prepared.info.path), prepared.work_dir, len(prepared.chunks))
            self.chunk_server.offer(prepared.work_id, offered, again=again)

    def _in_helper(self, work: Callable[[], Any]) -> Future[Any]:
        future = self.helpers.submit(work)
        future.add_done_callback(lambda _: self._woken.set())
        return future

    def carry_out(self, run: FileRun, *actions: Action) -> None:
        for action in actions:
            self._do(run, action)

    def _do(self, run: FileRun, action: Action) -> None:
        chunks = (run.prepared.work_id, len(run.prepared.chunks)) if run.prepared else None
        if action is Action.HOLD_CHUNKS and chunks:  # running chunks finish; the monitor leaves them
            control.take_off_queue(self.connection, *chunks, stop_running=False)
        elif action is Action.HOLD_CHUNKS:
            run.hold_when_prepared = True
        elif action is Action.STOP_CHUNKS and chunks:
            control.take_off_queue(self.connection, *chunks, stop_running=True)
        elif action is Action.CLEAR_CHUNKS and chunks:
            submit.clear_chunks(self.connection, *chunks)
        elif action is Action.OFFER_CHUNKS and run.prepared:
            self._offer(run.prepared)
        elif action is Action.SAMPLE_SOURCE and run.prepared and run.sampling is None:
            run.sampling = self.helpers.submit(pipeline.sample_source, run.prepared)
        elif action is Action.START_FINISHING:
            count = len(run.prepared.chunks) if run.prepared else 0
            log.info("%s: all %d chunks encoded; muxing and verifying", run.name, count)
            run.finishing = self._in_helper(self.owner.finish_work(run))
        elif action is Action.RECORD_DONE:
            self.owner.done(run)
        elif action is Action.RECORD_FAILED:
            self.owner.failed(run)
        elif action is Action.RECORD_CANCELLED:
            self.owner.cancelled(run)


def _wake_on_chunk_events(
    connection: redis.Redis, woken: threading.Event, wanted: Callable[[str], bool]
) -> threading.Event:
    """Set woken whenever a worker says a chunk it wants (by job id) ended, until the returned
    event is cleared: the driver then looks at once, not at its next poll (which still comes)."""
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            try:
                with state.chunk_events(connection) as events:
                    while listening.is_set():
                        message = events.get_message(timeout=POLL_SECONDS)
                        if message and wanted(message["data"].decode(errors="replace")):
                            woken.set()
            except redis.exceptions.RedisError:
                time.sleep(POLL_SECONDS)

    threading.Thread(target=listen, name="ute-chunk-events", daemon=True).start()
    return listening


def keep_going_until(stop: threading.Event, until: Callable[[], bool] | None) -> Callable[[], bool]:
    """Step until stop is set; then, if until is given, until it is true too."""
    return lambda: not (until() if stop.is_set() and until else stop.is_set())
