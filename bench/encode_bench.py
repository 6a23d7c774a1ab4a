"""`ute encode` with local workers against one plain `ffmpeg -c:v libx265` of the same clip, in
wall time and in CPU time (user + system of every process each one started), at each clip
length and preset asked for; the two runs of each pair are interleaved and the medians printed.

    python bench/encode_bench.py [--seconds 10,30,180,600] [--presets ultrafast,fast,medium]
                                 [--size 640x360] [--workers 2] [--runs 3]
                                 [--scaling-seconds 60] [--scaling-preset fast]

Both encode the same source (a testsrc2 clip in H.264 with a keyframe every 2 s) at the same
preset and CRF. The ute run includes everything a user waits for: Redis and worker start, the
probe and plan, the chunks, the mux and verify, and the stop. The tail is what the ute run
spends after its last chunk is encoded (mux, verify, stop), and its share of the run.

On a machine with more than 2 cores it then runs `--workers 1, 2, 4, ..., cores` against plain
ffmpeg on a 1080p clip (the header says how many cores it found).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from clips import compile_ute, testsrc_clip
from tail_bench import CHUNKS_DONE, tail_after_last_chunk

from ute import tools
from ute.cores import usable_cores


@dataclass(frozen=True)
class Cost:
    wall: float
    cpu: float
    tail: float = 0.0  # of a ute run: from its last chunk encoded to its exit


def timed(argv: Sequence[str]) -> Cost:
    """Wall and CPU seconds of one command and every process under it (all reaped by the end)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, ended = time.perf_counter() - started, time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = tail_after_last_chunk(run.stderr, ended) if CHUNKS_DONE in run.stderr else 0.0
    return Cost(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, tail)


def compare(source: Path, folder: Path, preset: str, workers: int, runs: int) -> tuple[Cost, Cost]:
    """Median (ffmpeg, ute) costs of `runs` interleaved pairs."""
    plain = [tools.ffmpeg(), "-v", "error", "-y", "-i", f"file:{source}", "-c:v", "libx265",
             "-preset", preset, "-crf", "28", "-x265-params", "log-level=error",
             f"file:{folder / 'plain.mkv'}"]  # fmt: skip
    chunked = [sys.executable, "-m", "ute.cli", "encode", str(source),
               "-o", str(folder / "ute.mkv"), "--force", "--preset", preset, "--crf", "28",
               "--workers", str(workers)]  # fmt: skip
    pairs = [(timed(plain), timed(chunked)) for _ in range(runs)]

    def middle(costs: list[Cost]) -> Cost:
        return Cost(*(median(getattr(cost, name) for cost in costs) for name in ("wall", "cpu", "tail")))

    return middle([pair[0] for pair in pairs]), middle([pair[1] for pair in pairs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="10,30,180,600", help="clip lengths, comma-separated")
    parser.add_argument("--presets", default="ultrafast,fast,medium", help="x265 presets, comma-separated")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each (medians)")
    parser.add_argument("--scaling-seconds", type=int, default=60,
                        help="length of the 1080p clip for --workers 1..N, on more than 2 cores (0: skip)")
    parser.add_argument("--scaling-preset", default="fast")
    args = parser.parse_args()
    compile_ute()
    print(f"{usable_cores()} cores, {args.size} at 24 fps, crf 28, `ute encode --workers {args.workers}`, "
          f"medians of {args.runs} interleaved runs")  # fmt: skip
    print(f"{'clip':>6} {'preset':>9} | {HEADER} | {'tail':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for seconds in (int(text) for text in args.seconds.split(",")):
            source = folder / f"source-{seconds}.mkv"
            testsrc_clip(source, args.size, seconds)
            for preset in args.presets.split(","):
                plain, chunked = compare(source, folder, preset, args.workers, args.runs)
                print(f"{seconds:>5}s {preset:>9} | {side_by_side(plain, chunked)} | {chunked.tail:>5.2f}s "
                      f"{100 * chunked.tail / chunked.wall:4.1f}%", flush=True)  # fmt: skip
            source.unlink()
        if args.scaling_seconds:
            scaling(folder, args.scaling_seconds, args.scaling_preset, args.runs)


HEADER = f"{'ffmpeg wall':>11} {'ute wall':>9} {'ratio':>6} | {'ffmpeg CPU':>10} {'ute CPU':>8} {'ratio':>6}"


def side_by_side(plain: Cost, chunked: Cost) -> str:
    return (f"{plain.wall:>10.2f}s {chunked.wall:>8.2f}s {chunked.wall / plain.wall:>5.2f}x | "
            f"{plain.cpu:>9.2f}s {chunked.cpu:>7.2f}s {chunked.cpu / plain.cpu:>5.2f}x")  # fmt: skip


def worker_counts(cores: int) -> list[int]:
    """1, 2, 4, ... and the number of cores."""
    counts = [1 << power for power in range(cores.bit_length()) if 1 << power < cores]
    return [*counts, cores]


def scaling(folder: Path, seconds: int, preset: str, runs: int) -> None:
    """`ute encode --workers 1..N` against plain ffmpeg on a 1080p clip, where the machine has
    the cores for it (on 2, a second worker has no core of its own: the main table shows that)."""
    cores = usable_cores()
    if cores <= 2:
        print(f"\n--workers 1..N at 1920x1080: not run, this machine has {cores} cores (more than 2 needed)")
        return
    print(f"\n{seconds} s at 1920x1080, {preset}, {cores} cores: `ute encode --workers N` against ffmpeg")
    print(f"{'workers':>7} | {HEADER}")
    source = testsrc_clip(folder / "source-1080p.mkv", "1920x1080", seconds)
    for workers in worker_counts(cores):
        plain, chunked = compare(source, folder, preset, workers, runs)
        print(f"{workers:>7} | {side_by_side(plain, chunked)}", flush=True)
    source.unlink()


if __name__ == "__main__":
    main()
