"""How fast a chunk of a SIGKILLed worker runs again on another worker (target: under 10 s).

    python bench/requeue_bench.py [--runs 5]

Each run: a private Redis, `ute encode --workers 0` as coordinator, two `ute-worker` processes;
the busy one is SIGKILLed with its work horse and ffmpeg, and the time until its chunk is being
encoded by the other worker is measured. For comparison, rq by itself only notices a dead worker
once its heartbeat key expires (a worker TTL of 420 s by default), and requeues its job in a
maintenance pass that runs every 600 s.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from clips import testsrc_clip
from rq import Worker

from ute import runner, state
from ute.redis_server import private_redis


def busy_job(connection, name: str) -> str | None:  # type: ignore[no-untyped-def]
    for worker in Worker.all(connection=connection):
        if worker.name == name and worker.get_current_job_id():
            return worker.get_current_job_id()
    return None


def wait(condition, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.02)
    return result


def one_run(folder: Path) -> float:
    source = folder / "source.mkv"
    if not source.exists():
        testsrc_clip(source, "640x360", 20)
    with private_redis(folder / f"redis-{time.monotonic_ns()}") as url:
        connection = state.connect(url)
        out = folder / "out.mkv"
        coordinator = runner.spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(out),
                                    "--force", "--workers", "0", "--redis-url", url, "--preset", "slow",
                                    "--chunk-frames", "240"])  # fmt: skip
        worker_a = runner.spawn([sys.executable, "-m", "ute.worker", "--redis-url", url, "--name", "a"])
        job_id = wait(lambda: busy_job(connection, "a"))
        worker_b = runner.spawn([sys.executable, "-m", "ute.worker", "--redis-url", url, "--name", "b"])
        wait(lambda: "b" in {w.name for w in Worker.all(connection=connection)})
        time.sleep(1.0)  # let the chunk run a little
        for process in [psutil.Process(worker_a.pid), *psutil.Process(worker_a.pid).children(recursive=True)]:
            process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        chunk = job_id.split("-g")[0]
        wait(lambda: (busy_job(connection, "b") or "").split("-g")[0] == chunk)
        latency = time.monotonic() - killed
        runner.stop([coordinator, worker_b], grace_seconds=5, cold=True)
        return latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        latencies = [one_run(Path(scratch)) for _ in range(args.runs)]
    print("requeue latency after SIGKILL, seconds: " + ", ".join(f"{x:.1f}" for x in latencies))
    print(f"min {min(latencies):.1f} s, median {statistics.median(latencies):.1f} s, "
          f"max {max(latencies):.1f} s (target < 10 s; heartbeat TTL {state.HEARTBEAT_TTL_SECONDS} s)")
    print("rq alone: worker TTL 420 s + maintenance every 600 s before the job is even noticed")


if __name__ == "__main__":
    main()
