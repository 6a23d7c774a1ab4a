"""`ute-worker`: an rq worker that takes chunks from `high`, then `low`, and runs only UTE's jobs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import psutil
import redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer

from ute import farm, jobs, pathmap, runner, state, submit, tools
from ute.defaults import (
    DEFAULT_REDIS_URL,
    ENV_CHUNK_SERVERS,
    ENV_PARENT_PID,
    REDIS_URL_FORMS,
    redis_url_from_env,
)
from ute.errors import UteError
from ute.logsetup import setup_logging
from ute.settings import check_redis_url
from ute.stopping import leave_now

log = logging.getLogger(__name__)


class ForbiddenJobError(UteError):
    """A job in our queues names a function that is not one of UTE's."""


# How long a chunk that failed on a worker is left to the others before it may run there again,
# and how long the worker rests each time it gives that chunk back.
PASS_ON_SECONDS = 60.0
PASS_ON_WAIT_SECONDS = 2.0


@dataclass
class LeftToOthers:
    """Which chunks this worker leaves to the others, and since when: a chunk that failed here
    goes to another live worker that has not failed it, if one takes it within PASS_ON_SECONDS;
    after that, or with nobody else there, it runs here again."""

    since: dict[str, float] = field(default_factory=dict)

    def leave(self, job_id: str, failed_on: list[str], me: str, live_workers: Callable[[], list[str]],
              now: float) -> bool:  # fmt: skip
        if me not in failed_on:
            return False
        first_seen = self.since.setdefault(job_id, now)
        if now - first_seen >= PASS_ON_SECONDS or not set(live_workers()) - set(failed_on):
            del self.since[job_id]
            return False
        if first_seen == now:
            log.info("job %s failed on this worker before; leaving it to another worker", job_id)
        self.since = {k: t for k, t in self.since.items() if now - t < 2 * PASS_ON_SECONDS}
        return True


class UteWorker(Worker):
    """JSON payloads only, and only the job functions in jobs.ALLOWED_JOB_FUNCTIONS; announces
    itself (host, current chunk, CPU and memory) every second for `ute status`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        self._presence_stop = threading.Event()
        self._left_to_others = LeftToOthers()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        processes: dict[int, psutil.Process] = {}
        # Once before taking work: the workers beside it count it when they share the cores.
        self._announce_once(processes)
        presence = threading.Thread(target=self._announce, args=(processes,), name="ute-presence",
                                    daemon=True)  # fmt: skip
        presence.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._presence_stop.set()
            presence.join(timeout=5)
            with contextlib.suppress(redis.exceptions.RedisError):
                state.withdraw_worker(self.connection, self.name)

    def _announce(self, processes: dict[int, psutil.Process]) -> None:
        while not self._presence_stop.wait(PRESENCE_SECONDS):
            self._announce_once(processes)

    def _announce_once(self, processes: dict[int, psutil.Process]) -> None:
        try:
            cpu, memory = _tree_usage(processes)
        except psutil.Error:  # announced all the same: the workers beside it count it
            cpu, memory = 0.0, 0
        with contextlib.suppress(redis.exceptions.RedisError):
            state.announce_worker(self.connection, self.name, {
                "name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "job": self.get_current_job_id(), "cpu_percent": round(cpu, 1), "memory_bytes": memory,
            })  # fmt: skip

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """rq's dequeue, except that a chunk which already failed here is given back for a while
        (see LeftToOthers), with a short rest so that an idle worker can take it."""
        while True:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if result is None or not self._leave_to_others(result[0]):
                return result
            job, queue = result
            try:
                state.give_back(self.connection, queue.name, job.id)
            except redis.exceptions.RedisError:
                return result  # run it here rather than lose it
            time.sleep(PASS_ON_WAIT_SECONDS)

    def _leave_to_others(self, job: Job) -> bool:
        def live_worker_names() -> list[str]:
            return [str(w.get("name")) for w in state.live_workers(self.connection)]

        try:
            return self._left_to_others.leave(job.id, job.meta.get("failed_on", []), self.name,
                                              live_worker_names, time.monotonic())  # fmt: skip
        except redis.exceptions.RedisError:
            return False

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        try:
            func_name = job.func_name
            if func_name not in jobs.ALLOWED_JOB_FUNCTIONS:
                raise ForbiddenJobError(f"refused job {job.id}: {func_name!r} is not a UTE job")
        except Exception:
            log.error("refused job %s: not a UTE job or not JSON", job.id)
            self._finalize_failure(job, queue, execution, sys.exc_info())
            return False
        return super().perform_job(job, queue, execution)

    def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_success(job, *args, **kwargs)
        self._announce_ended(job)

    def handle_job_failure(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(job, *args, **kwargs)
        self._announce_ended(job)

    def _announce_ended(self, job: Job) -> None:
        """The coordinator looks at the file at once instead of at its next poll."""
        with contextlib.suppress(redis.exceptions.RedisError):
            state.announce_chunk_ended(self.connection, job.id)

    def _install_signal_handlers(self) -> None:
        """rq's, then the stop signals a forked worker was started with blocked (see _fork_workers):
        one that came meanwhile is handled now, as a warm stop, instead of killing it."""
        super()._install_signal_handlers()
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        except StopRequested:  # raised by rq's handler out here: its loop ends at its first look
            self._stop_requested = True

    def unsubscribe(self) -> None:
        """rq's unsubscribes first and stops its command listener after: when the listener read
        the answer in between, it waited out its 60 s read, and every stop its 1 s join. Told to
        stop first, the answer ends its wait, and it closes its connection itself."""
        if self.pubsub_thread:
            _tell_to_stop(self.pubsub_thread)
            # The listener may wake (a command, its own health check) and close the subscription
            # under this call: the stop goes on regardless.
            with contextlib.suppress(redis.exceptions.RedisError, AttributeError):
                self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """Second signal: abort the chunk (rq kills the work horse) and requeue it at the front."""
        job_id = self.get_current_job_id()
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            if job_id:
                self._requeue_now(job_id)
            raise

    def _requeue_now(self, job_id: str) -> None:
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
            if submit.requeue_at_front(self.connection, job):
                log.warning("aborted job %s; it is back at the front of queue %s", job_id, job.origin)
        except Exception as error:  # the coordinator's monitor requeues it within seconds anyway
            log.warning("could not requeue job %s (%s); the monitor will", job_id, error)


def _tell_to_stop(thread: Any) -> None:
    """Clear a redis-py pub/sub thread's running flag without waiting for it: from redis-py 8.2
    its stop() also joins the thread, which sits in a 60 s read until a message comes (the
    answer to the unsubscribe that follows), so every worker's stop waited out that read."""
    try:
        thread.stop(timeout=0)
    except TypeError:  # before 8.2: stop() takes no timeout, and only clears the flag
        thread.stop()


PRESENCE_SECONDS = 1.0
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def _tree_usage(known: dict[int, psutil.Process]) -> tuple[float, int]:
    """CPU percent and resident memory of this process and everything below it (horse, ffmpeg).

    psutil measures CPU between two calls on the same Process object, so they are kept."""
    me = psutil.Process()
    current = {p.pid: known.get(p.pid, p) for p in [me, *me.children(recursive=True)]}
    known.clear()
    known.update(current)
    cpu, memory = 0.0, 0
    for process in current.values():
        with contextlib.suppress(psutil.Error):
            cpu += process.cpu_percent(None)
            memory += process.memory_info().rss
    return cpu, memory


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ute-worker",
        description=(
            "Encode UTE chunks from a Redis server: takes jobs from queue 'high' first, then "
            "'low'. Start as many as you like, on any machine that sees the same file paths."
        ),
    )
    parser.add_argument(
        "--redis-url",
        default=redis_url_from_env() or DEFAULT_REDIS_URL, metavar="URL",
        help=f"the coordinator's Redis: {REDIS_URL_FORMS} (default: $UTE_REDIS_URL, else "
             f"{DEFAULT_REDIS_URL}, the private Redis of `ute serve` on this machine)",
    )  # fmt: skip
    parser.add_argument(
        "--name", action="append", default=[],
        help="worker name shown in status (default: host.pid); repeat it to run one worker per name, "
             "each forked from this process once it has loaded what they need (one start for them all)",
    )  # fmt: skip
    parser.add_argument(
        "--log-folder", type=Path, default=None, metavar="DIR",
        help="with several names: each worker writes its output to DIR/NAME.log "
             "(default: all of them to this process's output)",
    )  # fmt: skip
    parser.add_argument(
        "--burst", action="store_true", help="exit once the queues are empty"
    )
    parser.add_argument(
        "--path-map", action="append", default=[], metavar="COORDINATOR=WORKER",
        help="where this machine sees a folder of the coordinator's, e.g. /srv/media=/mnt/media "
             "(repeat for several; default: $UTE_PATH_MAP, entries joined with ';')",
    )  # fmt: skip
    parser.add_argument(
        "--allow-chunk-server", action="append", default=[], metavar="HOST",
        help="a host besides the Redis host that this worker reads chunks from, where the coordinator "
             "says so (--advertise-url); repeatable (default: $UTE_CHUNK_SERVERS, joined with ';')",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: INFO)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    parent = os.environ.pop(ENV_PARENT_PID, None)  # before any fork: no work horse inherits it
    try:
        check_redis_url(args.redis_url)
        _check_log_names(args.name, args.log_folder)
        _set_up_path_map(args.path_map)
        if args.allow_chunk_server:  # the work horses read it from there
            os.environ[ENV_CHUNK_SERVERS] = ";".join(args.allow_chunk_server)
    except UteError as error:
        print(f"ute-worker: error: {error}", file=sys.stderr)
        return 2
    connection = state.connect(args.redis_url)
    try:
        connection.ping()
    except redis.exceptions.RedisError as error:
        print(f"ute-worker: error: cannot reach Redis at {state.redacted(args.redis_url)}: {error}",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        connection.close()  # each worker opens its own, after any fork
    try:
        log.info("encoder: %s", tools.ffmpeg())  # found once here, not again in every work horse
    except UteError as error:
        print(f"ute-worker: error: {error}", file=sys.stderr)
        return 1
    _import_before_forking()
    if len(args.name) > 1:
        _fork_workers(args, parent)
    _exit_with_parent(parent)
    return _work(args, args.name[0] if args.name else f"{socket.gethostname()}.{os.getpid()}")


def _work(args: argparse.Namespace, name: str) -> int:
    """Be the worker called name until it stops: its exit status."""
    connection = state.connect(args.redis_url)
    queues = [state.queue(queue_name, connection) for queue_name in state.QUEUES]
    while True:
        worker = UteWorker(queues, name=name, connection=connection)
        try:
            worker.work(burst=args.burst, logging_level=args.log_level.upper())
            return 0
        except redis.exceptions.RedisError as error:
            backoff = farm.RedisBackoff(0.5)
            if not backoff.unavailable(error):
                print(f"ute-worker: error: {error}", file=sys.stderr)
                return 1
            _wait_for_redis(connection, backoff)
            with contextlib.suppress(redis.exceptions.RedisError):
                worker.register_death()  # so the same name can register again
        except Exception as error:  # one line for the user, not a traceback
            print(f"ute-worker: error: {error}", file=sys.stderr)
            return 1


def _fork_workers(args: argparse.Namespace, parent: str | None) -> NoReturn:
    """Fork one worker per name and wait for them all: they start with everything this process
    loaded (0.4 s of a core each that they need not spend). Each stop signal this process gets
    is passed on to every worker (the first: finish the chunk; the second: abort it), whether it
    was sent to this process alone (systemd's KillMode=mixed) or to its process group (Ctrl-C):
    the workers run in groups of their own. It exits once they have, with the first failure's
    status."""
    try:
        logs = {name: _open_log(args.log_folder, name) for name in args.name}
    except OSError as error:
        print(f"ute-worker: error: --log-folder {args.log_folder}: {error.strerror}", file=sys.stderr)
        leave_now(2)
    sys.stdout.flush()
    sys.stderr.flush()
    # Until each side has its handlers: a stop signal waits for them instead of killing a worker
    # before rq can stop it warmly (or this process in the middle of the forks).
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    children: dict[int, str] = {}
    launcher = os.getpid()
    for name in args.name:
        pid = os.fork()
        if pid == 0:
            _be_forked_worker(args, name, launcher, logs)
        children[pid] = name
    for log_file in logs.values():
        if log_file is not None:
            os.close(log_file)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, pass_on)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _exit_with_parent(parent)
    status = 0
    while children:
        pid, wait_status = os.wait()
        name = children.pop(pid, "")
        code = os.waitstatus_to_exitcode(wait_status)
        if name and code:
            log.warning("worker %s (pid %d) exited with status %d", name, pid, code)
            status = status or (code if code > 0 else 1)
    # Without the interpreter's teardown, which a stopping coordinator would wait for (0.03-0.05 s
    # with numpy and PyAV loaded): nothing is left to tear down once the workers are gone.
    leave_now(status)


def _open_log(folder: Path | None, name: str) -> int | None:
    """The worker's log file (opened before the forks: one that cannot be is a failure at once)."""
    if folder is None:
        return None
    return os.open(folder / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def _check_log_names(names: list[str], log_folder: Path | None) -> None:
    """A name that is a log's name too is a plain file name: its log stays in the folder."""
    if log_folder is None or len(names) < 2:
        return
    for name in names:
        if name in {"", ".", ".."} or os.path.basename(name) != name or "\0" in name:
            raise UteError(f"--name {name!r}: with --log-folder a worker's name is its log's file "
                           "name; use one without '/'")  # fmt: skip


def _be_forked_worker(args: argparse.Namespace, name: str, launcher: int, logs: dict[str, int | None]
                      ) -> NoReturn:  # fmt: skip
    """In the forked child: be the worker called name, and never return into the parent's code."""
    code = 1
    try:
        os.setpgrp()  # stop signals come from the launcher, once each
        log_file = logs[name]
        if log_file is not None:
            os.dup2(log_file, sys.stdout.fileno())
            os.dup2(log_file, sys.stderr.fileno())
            setup_logging(args.log_level)  # plain lines in the file, even if the launcher had a terminal
        for other in logs.values():
            if other is not None:
                os.close(other)
        _exit_with_parent(str(launcher))
        code = _work(args, name)
    except SystemExit as leaving:  # rq's cold stop, as it would end a worker of its own process
        code = leaving.code if isinstance(leaving.code, int) else int(leaving.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _import_before_forking() -> None:
    """What every work horse needs, imported once here: each chunk runs in a fresh fork of this
    process, and would import it again. The frozen objects stay out of the garbage collector's
    reach, so that its passes do not write to (and so copy) their pages in every fork."""
    import gc

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # nothing here multiplies matrices
    import numpy  # noqa: F401  # PyAV imports it on a frame's first to_ndarray

    gc.freeze()


PARENT_CHECK_SECONDS = 0.5


def _exit_with_parent(expected: str | None) -> None:
    """A local worker (its coordinator set $UTE_PARENT_PID; a forked one, its parent) exits with
    its work horse and encoder once that parent is gone, however it ended; the next coordinator's
    monitor requeues the chunk. rq's horse outlives its worker, so a parent-death signal on the
    worker alone would not do."""
    if not expected:
        return

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(PARENT_CHECK_SECONDS)
        log.warning("its parent (pid %s) is gone: stopping this worker and its chunk", expected)
        runner.kill_descendants(os.getpid())  # the work horse, ffmpeg
        os._exit(1)

    threading.Thread(target=watch, name="ute-parent-watch", daemon=True).start()


def _set_up_path_map(entries: list[str]) -> None:
    """Command-line mappings replace $UTE_PATH_MAP; the work horses read it from there."""
    mappings = pathmap.parse(entries) if entries else pathmap.from_env()
    os.environ[pathmap.ENV_PATH_MAP] = pathmap.to_env(mappings)
    for mapping in mappings:
        log.info("paths: the coordinator's %s is %s here", mapping.coordinator, mapping.worker)
        if not os.path.isdir(mapping.worker):
            log.warning("%s is not a folder on this machine (not mounted yet?)", mapping.worker)


def _wait_for_redis(connection: redis.Redis, backoff: farm.RedisBackoff) -> None:
    """Back off until Redis answers and takes writes; a stop signal meanwhile ends the worker."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a forked worker that never got to rq's
    while True:
        time.sleep(backoff.pause)
        try:
            state.try_write(connection)
            backoff.answered()
            return
        except redis.exceptions.RedisError as error:
            if not backoff.unavailable(error):
                raise


if __name__ == "__main__":
    sys.exit(main())
