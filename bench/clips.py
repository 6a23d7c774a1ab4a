"""The clip the encode benchmarks share: testsrc2 in H.264 with a keyframe every 2 s."""

from __future__ import annotations

from pathlib import Path

from ute import runner, tools


def testsrc_clip(path: Path, size: str, seconds: int) -> Path:
    runner.run([tools.ffmpeg(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=24:d={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "48", f"file:{path}"])  # fmt: skip
    return path
