"""What one look at a long film's chunks costs the coordinator (it looks every 0.5 s).

    python bench/poll_bench.py [--chunks 719] [--looks 40]

A 2-hour film at the default 10-second chunks has 719 of them. They are put into a private Redis
as UTE submits them; then half are marked finished and two started, as midway through an encode.
Printed: the milliseconds of one look the way UTE looks now (one status field per unfinished
chunk, whole records only of running and failed ones, finished chunks never again) against the
baseline of reading every chunk's whole job record, measured in the same run, and what each
costs of one core at two looks a second.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from rq.job import JobStatus

from ute import pipeline, plan, state, tools
from ute.probe import probe
from ute.progress import read_progress
from ute.redis_server import private_redis
from ute.settings import EncodeSettings

LOOKS_PER_SECOND = 2  # the driver's poll


def timed(look: Callable[[], object], looks: int) -> float:
    """Median milliseconds of one look."""
    look()
    seconds = []
    for _ in range(looks):
        started = time.perf_counter()
        look()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def print_costs(rows: list[tuple[str, float]], per_second: float, label_width: int) -> None:
    """Each (label, milliseconds) with its share of a core at per_second of them a second."""
    for label, milliseconds in rows:
        share = milliseconds / 1000 * per_second * 100
        print(f"{label:{label_width}} {milliseconds:7.1f} ms   {share:5.1f}% of a core")


def film_midway(connection: redis.Redis, folder: Path, chunk_count: int) -> pipeline.PreparedFile:
    """A film of chunk_count chunks submitted as UTE submits them, then half marked finished and
    two started, as midway through an encode; the queued ones stay in their queue."""
    source = folder / "film.mkv"
    subprocess.run([tools.ffmpeg(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x36:rate=24", "-t", "1", "-c:v", "libx264", str(source)],
                   check=True)  # fmt: skip
    small = pipeline.prepare(probe(source), EncodeSettings(), folder / ".ute-work")
    chunks = tuple(plan.Chunk(index, index * 240, (index + 1) * 240) for index in range(chunk_count))
    specs = tuple(dataclasses.replace(small.specs[0], index=c.index, start=c.start) for c in chunks)
    film = dataclasses.replace(small, chunks=chunks, specs=specs)
    pipeline.check_chunks(connection, film, state.QUEUE_LOW)  # queues every chunk, as a first look does
    job_ids = state.current_chunk_job_ids(connection, film.work_id, range(chunk_count))
    for index, job_id in enumerate(job_ids):
        status = JobStatus.FINISHED if index < chunk_count // 2 else (
            JobStatus.STARTED if index < chunk_count // 2 + 2 else None)  # fmt: skip
        if status is not None:
            connection.hset(f"rq:job:{job_id}", "status", status.value)
    return film


def film_arguments(description: str) -> argparse.Namespace:
    """--chunks (a 2-hour film's 719) and --looks (the median of how many)."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=719)
    parser.add_argument("--looks", type=int, default=40)
    return parser.parse_args()


@contextlib.contextmanager
def midway_in_private_redis(chunk_count: int) -> Iterator[tuple[redis.Redis, pipeline.PreparedFile]]:
    """A private Redis with film_midway in it, for as long as the block runs."""
    with tempfile.TemporaryDirectory() as folder_name, private_redis(Path(folder_name) / "redis") as url:
        connection = state.connect(url)
        yield connection, film_midway(connection, Path(folder_name), chunk_count)


def main() -> None:
    args = film_arguments(__doc__ or "")
    with midway_in_private_redis(args.chunks) as (connection, film):
        chunks = film.chunks

        def baseline() -> object:
            jobs = state.current_chunk_jobs(connection, film.work_id, args.chunks)
            statuses = [job.get_status(refresh=False) if job else None for job in jobs]
            return read_progress(chunks, statuses, {index: job for index, job in enumerate(jobs) if job})

        done: set[int] = set()
        pipeline.check_chunks(connection, film, state.QUEUE_LOW, done)  # the first look learns what is done
        now = timed(lambda: pipeline.check_chunks(connection, film, state.QUEUE_LOW, done), args.looks)
        first = timed(lambda: pipeline.check_chunks(connection, film, state.QUEUE_LOW, set()), args.looks)
        old = timed(baseline, args.looks)
        print(f"{args.chunks} chunks: {args.chunks // 2} finished, 2 running, the rest queued; "
              f"median of {args.looks} looks")
        print_costs([("whole records of every chunk (before)", old),
                     ("a first look (nothing known finished)", first),
                     ("a look now (finished ones not read)", now)], LOOKS_PER_SECOND, 40)  # fmt: skip
        print(f"now / before: {now / old:.2f}x")


if __name__ == "__main__":
    main()
