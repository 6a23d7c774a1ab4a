"""Local `ute-worker` processes started beside a coordinator (`--workers N`)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis
from rq import Worker

from ute import runner, state, submit
from ute.encode_start import LOCAL_WORKER_GRACE_SECONDS, local_worker_names, spawn_local_workers
from ute.errors import UteError

log = logging.getLogger(__name__)

WORKER_START_SECONDS = 60
REGISTRATION_POLL_SECONDS = 0.02  # a short file's encode starts once they are there


@contextlib.contextmanager
def local_workers(url: str, count: int, log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start count workers; on leaving, stop the ones still running (cold after an error).
    The list is the live one: replace_dead() puts new workers in it."""
    names = local_worker_names(count)
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = [spawn_local_workers(url, [name], log_dir) for name in names]
    finished = False
    try:
        if processes:
            wait_until_registered(state.connect(url), names, processes, log_dir)
        yield processes
        finished = True
    finally:
        runner.stop(processes, grace_seconds=LOCAL_WORKER_GRACE_SECONDS, cold=not finished)


def abort(url: str, processes: Sequence[subprocess.Popen[bytes]]) -> int:
    """The second stop signal: kill the local workers with their work horses and encoders, and
    put the chunks they had back at the front of their queues at once; how many went back."""
    connection = state.connect(url)
    pids = {process.pid for process in processes if process.poll() is None}
    jobs = [worker.get_current_job() for worker in Worker.all(connection=connection) if worker.pid in pids]
    runner.kill(processes)
    return sum(submit.requeue_at_front(connection, job) for job in jobs if job is not None)


def replace_dead(url: str, processes: list[subprocess.Popen[bytes]], log_dir: Path) -> int:
    """Start a new worker, under a new name, for each local worker that died; how many.
    (The dead one's chunk is requeued by the monitor when its heartbeat lapses.)"""
    replaced = 0
    for position, process in enumerate(processes):
        if process.poll() is None:
            continue
        name = f"local-{os.getpid()}-{position + 1}.{process.pid}"
        log.warning("local worker %d exited (status %s); starting %s in its place", process.pid,
                    process.returncode, name)  # fmt: skip
        processes[position] = spawn_local_workers(url, [name], log_dir)
        replaced += 1
    return replaced


def wait_until_registered(
    connection: redis.Redis, names: Sequence[str], processes: Sequence[subprocess.Popen[bytes]],
    log_dir: Path,
) -> None:  # fmt: skip
    """Queue nothing before the local workers listen, so every one of them gets chunks."""
    deadline = time.monotonic() + WORKER_START_SECONDS
    wanted = {Worker.redis_worker_namespace_prefix + name for name in names}
    while not wanted <= set(Worker.all_keys(connection=connection)):  # one SMEMBERS a look
        if any(process.poll() is not None for process in processes):
            raise UteError(f"a local worker exited at start; see its log in {log_dir}")
        if time.monotonic() > deadline:
            raise UteError(f"local workers did not start within {WORKER_START_SECONDS} s")
        time.sleep(REGISTRATION_POLL_SECONDS)
    log.info("started %d local workers", len(names))
