"""What the encode benchmarks share: the clip (testsrc2 in H.264 with a keyframe every 2 s), and
UTE's modules compiled as an install leaves them."""

from __future__ import annotations

import compileall
from pathlib import Path

import ute
from ute import runner, tools


def testsrc_clip(path: Path, size: str, seconds: int) -> Path:
    runner.run([tools.ffmpeg(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=24:d={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "48", f"file:{path}"])  # fmt: skip
    return path


def compile_ute() -> None:
    """Compile UTE's modules to bytecode, as `pip install` does and as any run writes them where
    PYTHONDONTWRITEBYTECODE is unset. Where it is set (some sandboxes and containers), an editable
    checkout would compile every module again in every process: 0.2 s of each worker's start."""
    compileall.compile_dir(Path(ute.__file__).parent, quiet=1)
