"""`ute serve` as a process: the private Redis, the local workers, the inbox's files, the two stop signals."""

from __future__ import annotations

import contextlib
import logging
import threading

from ute import farm, pipeline, runner, state
from ute.chunkserver import chunk_server
from ute.defaults import DEFAULT_REDIS_BIND, DEFAULT_REDIS_PORT
from ute.errors import UteError
from ute.history import HISTORY_FILE_NAME, History
from ute.inbox import InboxLayout
from ute.inbox_files import InboxFiles, ServeOptions
from ute.localworkers import abort as abort_local_workers
from ute.localworkers import local_workers, replace_dead
from ute.redis_server import private_redis_server
from ute.transfer import ServerOptions

log = logging.getLogger(__name__)


def serve(
    options: ServeOptions,
    *,
    workers: int,
    redis_url: str | None,
    redis_port: int = DEFAULT_REDIS_PORT,
    redis_bind: str = DEFAULT_REDIS_BIND,
    stop: threading.Event | None = None,
    abort: threading.Event | None = None,
    network: ServerOptions | None = None,
) -> None:
    """Run the service until stop is set, then coast down (finish running chunks) unless abort
    is set too. The CLI sets stop on the first SIGTERM or Ctrl-C and abort on the second."""
    stop, abort = stop or threading.Event(), abort or threading.Event()
    InboxLayout(options.inbox).create()
    options.outbox.mkdir(parents=True, exist_ok=True)
    for stale in pipeline.remove_stale_partials(options.outbox):
        log.info("removed %s, a half-muxed output of an earlier run", stale.name)
    options.work_root.mkdir(parents=True, exist_ok=True)
    full = farm.low_disk([options.inbox, options.outbox, options.work_root])
    if full:
        raise UteError(f"not starting: {full}")
    history = History(options.work_root / HISTORY_FILE_NAME)
    with contextlib.ExitStack() as stack:
        private = None
        if not redis_url:
            private = stack.enter_context(
                private_redis_server(options.work_root / "redis", host=redis_bind, port=redis_port)
            )
            redis_url = private.url
            if redis_bind not in ("127.0.0.1", "localhost", "::1"):
                log.warning("Redis listens on %s without a password: only do this on a network "
                            "you trust", redis_bind)  # fmt: skip
        shown = state.redacted(redis_url)
        log.info("Redis: %s  (remote workers: ute-worker --redis-url %s)", shown, shown)
        worker_logs = options.work_root / "logs"
        processes = stack.enter_context(local_workers(redis_url, workers, worker_logs))
        connection = state.connect(redis_url)
        server = stack.enter_context(chunk_server(connection, redis_url, options.work_root,
                                                  network or ServerOptions(),
                                                  redis_bind if private else None))  # fmt: skip
        service = InboxFiles(options, connection, history, server)
        url = redis_url

        def supervise() -> None:
            """Whatever of ours died is started again: the private Redis (same port, same data),
            then the local workers (their chunks are requeued by the monitor)."""
            if private is not None:
                try:
                    private.restart_if_dead()
                except UteError as error:
                    log.error("the private Redis does not start again: %s", error)
                    return
            replace_dead(url, processes, worker_logs)
        coasting = False

        def coasted_down() -> bool:
            """After the first stop signal: local workers finish their chunks and files being muxed
            or post-processed are finished, then we leave."""
            nonlocal coasting
            if abort.is_set():
                return True
            if not coasting:
                coasting = True
                log.info("coasting down: local workers finish their chunks, files being muxed are "
                         "finished (stop again to abort)")  # fmt: skip
                runner.stop(processes, grace_seconds=0, wait=False)
            return all(process.poll() is not None for process in processes) and not service.finishing()

        service.run(stop, until=coasted_down, supervise=supervise)
        if abort.is_set():
            requeued = abort_local_workers(url, processes)
            log.info("aborted: %d running chunks went back to the front of their queue", requeued)
