"""`ute encode` with local workers against one plain `ffmpeg -c:v libx265` of the same clip.

    python bench/encode_bench.py [--seconds 30] [--size 640x360] [--preset fast] [--workers 2]

Both runs use the same preset and CRF; the figure is wall time, measured here, in this run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ute import runner, tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ffmpeg = tools.ffmpeg()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = folder / "source.mkv"
        runner.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=s={args.size}:r=24:d={args.seconds}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "48", f"file:{source}"])  # fmt: skip
        started = time.perf_counter()
        runner.run([ffmpeg, "-v", "error", "-i", f"file:{source}", "-c:v", "libx265",
                    "-preset", args.preset, "-x265-params", "log-level=error",
                    f"file:{folder / 'baseline.mkv'}"])  # fmt: skip
        baseline = time.perf_counter() - started

        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ute.cli", "--log-level", "WARNING", "encode",
                        str(source), "-o", str(folder / "ute.mkv"), "--preset", args.preset,
                        "--workers", str(args.workers)], check=True)  # fmt: skip
        chunked = time.perf_counter() - started
        frames = args.seconds * 24
        print(f"clip: {args.size}, {frames} frames, preset {args.preset}")
        print(f"baseline ffmpeg libx265:      {baseline:6.1f} s  ({frames / baseline:6.1f} fps)")
        print(f"ute encode --workers {args.workers}:      {chunked:6.1f} s  ({frames / chunked:6.1f} fps)"
              "  (includes Redis and worker start, mux and full-decode verify)")
        print(f"ute / baseline: {chunked / baseline:.2f}x")


if __name__ == "__main__":
    main()
