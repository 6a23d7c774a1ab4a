"""What the coordinator costs while a long film encodes: the CPU time of the whole `ute encode`
coordinator (its driver loop, monitor, chunk server and event listener, every thread), over a
stretch of a 2-hour film's 719 chunks, with a swarm finishing chunks at a steady rate.

    python bench/coordinator_bench.py [--chunks 719] [--seconds 30] [--every 0.5]

The swarm is a stand-in in a process of its own (encoding is not what is measured): it takes
the chunk jobs from the real Redis queue in order, marks each finished and announces it as a
worker does, one every --every seconds. The coordinator is UTE's own driver, as `ute encode`
runs it. Printed: its CPU time as a share of one core, and per 100 chunks finished, against
the baseline of an idle Python process sleeping in 0.5 s steps over the same stretch.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
from poll_bench import midway_in_private_redis
from rq.job import JobStatus

from ute import farm, state
from ute.chunkserver import chunk_server
from ute.driver import Driver, FileRun
from ute.encode import _OneFile
from ute.transfer import ServerOptions


def swarm(url: str, queue_name: str, every: float, stop: threading.Event) -> None:
    """Finish the queued chunks in order, one every `every` seconds, as workers would."""
    connection = state.connect(url)
    queue = state.queue(queue_name, connection)
    while not stop.wait(every):
        while (job_id := queue.pop_job_id()) is not None:
            if connection.hget(f"rq:job:{job_id}", "status") != JobStatus.FINISHED.value.encode():
                break
        if job_id is None:
            return
        connection.hset(f"rq:job:{job_id}", "status", JobStatus.FINISHED.value)
        state.announce_chunk_ended(connection, job_id)


def finished_chunks(connection: redis.Redis, work_id: str, chunk_count: int) -> int:
    statuses = state.current_chunk_statuses(connection, work_id, range(chunk_count))
    return sum(1 for _, status in statuses if status == JobStatus.FINISHED)


def idle_baseline(seconds: float) -> float:
    """CPU seconds of this process sleeping in the driver's steps: what Python costs doing nothing."""
    started = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=719)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between two chunks finishing")
    args = parser.parse_args()
    with midway_in_private_redis(args.chunks) as (connection, film):
        url = connection.connection_pool.connection_kwargs
        redis_url = f"redis://{url['host']}:{url['port']}/{url.get('db', 0)}"
        run = FileRun(film.file_id, Path(film.info.path), state.QUEUE_LOW)
        disks = farm.DiskGuard(connection, [film.work_dir])
        finished_before = finished_chunks(connection, film.work_id, args.chunks)
        stop = multiprocessing.Event()
        with ThreadPoolExecutor(1) as helpers, chunk_server(connection, redis_url, film.work_dir.parent,
                                                            ServerOptions()) as server:  # fmt: skip
            driver = Driver(connection, _OneFile(force=False, full_verify=False), disks, helpers, server)
            driver.add(run, lambda: film, frames_total=film.info.frame_count)
            swarm_args = (redis_url, state.QUEUE_LOW, args.every, stop)
            finishing = multiprocessing.Process(target=swarm, args=swarm_args)
            deadline = time.monotonic() + args.seconds
            finishing.start()
            cpu = time.process_time()
            driver.run(lambda: time.monotonic() < deadline and not run.state.terminal)
            cpu = time.process_time() - cpu
            stop.set()
            finishing.join()
        finished = finished_chunks(connection, film.work_id, args.chunks) - finished_before
    idle = idle_baseline(args.seconds)
    print(f"{args.chunks}-chunk film, {args.seconds:.0f} s of it, a chunk finished every {args.every} s "
          f"({finished} in all), coordinator state {run.state.value}")  # fmt: skip
    print(f"idle Python process (baseline): {idle:6.3f} s CPU = {100 * idle / args.seconds:5.2f}% of a core")
    print(f"ute coordinator:                {cpu:6.3f} s CPU = {100 * cpu / args.seconds:5.2f}% of a core, "
          f"{1000 * cpu / max(finished, 1) * 100:.0f} ms per 100 chunks")


if __name__ == "__main__":
    main()
