"""What chunking costs in quality and size: `ute encode` against one plain `ffmpeg -c:v libx265`
of the same clip at the same CRF and preset, scored with VMAF (and PSNR) against the source.

    python bench/quality_bench.py [--seconds 60] [--size 640x360] [--preset fast] [--crf 28]

Each chunk starts with a fresh encoder (a new IDR frame, no reference across the border, a cold
rate control), so the frames right after a chunk border are where a difference would show. The
figures are printed for the whole clip and for the first frames of each chunk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

from ute import runner, tools

BORDER_FRAMES = 3  # frames after each chunk start that count as "at the border"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--crf", default="28")
    parser.add_argument("--chunk-frames", default="240")
    args = parser.parse_args()
    ffmpeg = tools.ffmpeg()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = folder / "source.mkv"
        # A continuous zoom: every frame depends on the one before, as in real footage.
        runner.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                    f"mandelbrot=s={args.size}:r=24,trim=duration={args.seconds}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "0", "-g", "48", f"file:{source}"])  # fmt: skip
        baseline = folder / "baseline.mkv"
        runner.run([ffmpeg, "-v", "error", "-i", f"file:{source}", "-c:v", "libx265", "-preset", args.preset,
                    "-crf", args.crf, "-x265-params", "log-level=error", f"file:{baseline}"])  # fmt: skip
        chunked = folder / "ute.mkv"
        ute = [sys.executable, "-m", "ute.cli", "--log-level", "WARNING"]
        subprocess.run([*ute, "encode", str(source), "-o", str(chunked), "--preset", args.preset,
                        "--crf", args.crf, "--chunk-frames", args.chunk_frames, "--workers", "2"],
                       check=True)  # fmt: skip
        planned = subprocess.run([*ute, "plan", str(source), "--json", "--chunk-frames", args.chunk_frames],
                                 check=True, capture_output=True)  # fmt: skip
        plan = json.loads(planned.stdout)
        borders = {c["start"] + k for c in plan["chunks"][1:] for k in range(BORDER_FRAMES)}
        print(f"clip: mandelbrot {args.size}, {plan['frames']} frames, {len(plan['chunks'])} chunks, "
              f"preset {args.preset}, crf {args.crf}")
        print(f"{'':10} {'size':>10} {'VMAF':>7} {'VMAF at borders':>16} {'PSNR':>7} {'PSNR at borders':>16}")
        for name, output in (("ffmpeg", baseline), ("ute", chunked)):
            vmaf, psnr = _scores(ffmpeg, output, source, folder / f"{name}.json")
            at_borders = [i for i in range(len(vmaf)) if i in borders]
            print(f"{name:10} {output.stat().st_size / 1e6:8.2f} MB {mean(vmaf):7.2f} "
                  f"{mean(vmaf[i] for i in at_borders):16.2f} {mean(psnr):7.2f} "
                  f"{mean(psnr[i] for i in at_borders):16.2f}")  # fmt: skip
        print(f"size ute / ffmpeg: {chunked.stat().st_size / baseline.stat().st_size:.3f}x")


def _scores(ffmpeg: str, distorted: Path, reference: Path, log: Path) -> tuple[list[float], list[float]]:
    """Per-frame VMAF and PSNR (luma) of distorted against reference."""
    runner.run([ffmpeg, "-v", "error", "-i", f"file:{distorted}", "-i", f"file:{reference}",
                "-lavfi", f"[0:v][1:v]libvmaf=feature=name=psnr:log_fmt=json:log_path={log}:n_threads=2",
                "-f", "null", "-"])  # fmt: skip
    frames = json.loads(log.read_text())["frames"]
    return [f["metrics"]["vmaf"] for f in frames], [f["metrics"]["psnr_y"] for f in frames]


if __name__ == "__main__":
    main()
