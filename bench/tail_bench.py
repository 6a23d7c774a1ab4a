"""The tail of a run: what `ute encode` does after its last chunk is encoded (mux, verify, stop),
verified from the segments (the default) against decoding the whole output (`--verify full`,
what every run did before), on the same clip in the same run.

    python bench/tail_bench.py [--seconds 120] [--size 1280x720] [--preset ultrafast] [--workers 2]

The tail is measured from the log line that says every chunk is encoded to the moment the
process has exited, and printed with the run's wall time and its share of it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from clips import compile_ute, testsrc_clip

CHUNKS_DONE = "chunks encoded; muxing and verifying"


def timed_encode(source: Path, output: Path, preset: str, workers: int, verify: str) -> tuple[float, float]:
    """(wall seconds, tail seconds) of one `ute encode`."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                          "--preset", preset, "--workers", str(workers), "--verify", verify],
                         capture_output=True, text=True, check=True)  # fmt: skip
    ended, wall = time.time(), time.perf_counter() - started
    return wall, tail_after_last_chunk(run.stderr, ended)


def tail_after_last_chunk(log: str, ended: float) -> float:
    """Seconds from the log line of a `ute encode` run that says every chunk is encoded to ended."""
    [line] = [line for line in log.splitlines() if CHUNKS_DONE in line]
    return ended - datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1, help="runs of each, interleaved (medians)")
    args = parser.parse_args()
    compile_ute()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = testsrc_clip(folder / "source.mkv", args.size, args.seconds)
        results: dict[str, list[tuple[float, float]]] = {"full": [], "segments": []}
        for number in range(args.runs):
            for verify in results:
                output = folder / f"{verify}-{number}.mkv"
                results[verify].append(timed_encode(source, output, args.preset, args.workers, verify))
        print(f"clip: {args.size}, {args.seconds * 24} frames, preset {args.preset}, {args.workers} workers")
        for verify, runs in results.items():
            wall = sorted(w for w, _ in runs)[len(runs) // 2]
            tail = sorted(t for _, t in runs)[len(runs) // 2]
            label = "--verify full (baseline)" if verify == "full" else "--verify segments (default)"
            print(f"{label:30} run {wall:6.1f} s   tail after the last chunk {tail:5.2f} s = "
                  f"{100 * tail / wall:4.1f}% of the run")


if __name__ == "__main__":
    main()
