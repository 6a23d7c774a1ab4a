"""Probe + plan of a long file against one `ffmpeg -c copy -f null` pass over the same file.

    python bench/probe_bench.py [--minutes 120] [--keep DIR]

Makes a long, tiny test file (10 minutes encoded once, then looped with -c copy), so the
figure is about demuxing packets, which is what the keyframe index costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ute import runner, tools
from ute.pipeline import plan_for
from ute.probe import probe
from ute.settings import EncodeSettings


def make_long_file(folder: Path, minutes: int) -> Path:
    ffmpeg = tools.ffmpeg()
    piece, long_file = folder / "piece.mkv", folder / f"long-{minutes}min.mkv"
    if long_file.exists():
        return long_file
    runner.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x90:r=24:d=600",
                "-f", "lavfi", "-i", "sine=d=600", "-c:v", "libx264", "-preset", "ultrafast",
                "-g", "240", "-c:a", "aac", "-b:a", "32k", f"file:{piece}"])  # fmt: skip
    loops = max(1, minutes // 10)
    runner.run([ffmpeg, "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", f"file:{piece}",
                "-c", "copy", f"file:{long_file}"])  # fmt: skip
    return long_file


def timed(action) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--keep", type=Path, help="folder to keep (and reuse) the test file in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        source = make_long_file(folder, args.minutes)
        probe_seconds, info = timed(lambda: probe(source))
        plan_seconds, chunks = timed(lambda: plan_for(info, EncodeSettings()))  # type: ignore[arg-type]
        copy_argv = [tools.ffmpeg(), "-v", "error", "-i", f"file:{source}",
                     "-map", "0", "-c", "copy", "-f", "null", "-"]  # fmt: skip
        copy_seconds, _ = timed(lambda: runner.run(copy_argv))
        print(f"file: {info.frame_count} frames, {info.duration_seconds / 60:.1f} min, "  # type: ignore[attr-defined]
              f"{len(info.keyframes)} keyframes, {len(chunks)} chunks")  # type: ignore[attr-defined,arg-type]
        print(f"ute probe (keyframe index): {probe_seconds:7.3f} s")
        print(f"ute plan (pure):            {plan_seconds:7.3f} s")
        print(f"baseline ffmpeg -c copy -f null: {copy_seconds:7.3f} s")
        print(f"probe+plan / baseline: {(probe_seconds + plan_seconds) / copy_seconds:.2f}x")


if __name__ == "__main__":
    main()
