"""Pre plugin: find black bars (letterbox, pillarbox) and crop them away.

Samples SAMPLES points spread over the video with ffmpeg's cropdetect and keeps the smallest
crop that holds the picture of every sample, so nothing a sample shows is ever cut. Writes
{"crop": "w:h:x:y"} to the overrides only when there are bars to remove. Set UTE_CROP_SAMPLES to
change the number of samples, or UTE_CROP=off to switch this plugin off.
"""

from __future__ import annotations

import os
import re
import sys

from ute import plugin_api, runner
from ute.probe import probe

SAMPLES = int(os.environ.get("UTE_CROP_SAMPLES", "17"))
FRAMES_PER_SAMPLE = 3
MIN_BAR_PIXELS = 4  # smaller differences are encoder padding, not bars
CROP_LINE = re.compile(r"crop=(\d+):(\d+):(\d+):(\d+)")


def sample(source: str, seconds: float) -> tuple[int, int, int, int] | None:
    result = runner.run([
        plugin_api.ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "info",
        "-ss", f"{seconds:.3f}", "-i", f"file:{source}", "-map", "0:v:0",
        "-frames:v", str(FRAMES_PER_SAMPLE), "-vf", "cropdetect=limit=24:round=2:reset=0",
        "-f", "null", "-",
    ], timeout=120, check=False)  # fmt: skip
    found = [CROP_LINE.search(line) for line in result.stderr_tail]
    matches = [m for m in found if m]
    if not matches:
        return None
    width, height, x, y = (int(value) for value in matches[-1].groups())
    return (x, y, x + width, y + height) if width > 0 and height > 0 else None


def main() -> int:
    if os.environ.get("UTE_CROP", "").lower() == "off":
        return 0
    source = plugin_api.source()
    info = probe(source)
    points = [info.duration_seconds * (n + 1) / (SAMPLES + 1) for n in range(SAMPLES)]
    boxes = [box for box in (sample(str(source), t) for t in points) if box]
    if len(boxes) < max(1, SAMPLES // 2):
        print(f"cropdetect: only {len(boxes)} of {SAMPLES} samples usable; not cropping")
        return 0
    left = min(box[0] for box in boxes) // 2 * 2
    top = min(box[1] for box in boxes) // 2 * 2
    right = min(info.width, -(-max(box[2] for box in boxes) // 2) * 2)
    bottom = min(info.height, -(-max(box[3] for box in boxes) // 2) * 2)
    width, height = right - left, bottom - top
    if info.width - width < MIN_BAR_PIXELS and info.height - height < MIN_BAR_PIXELS:
        print(f"cropdetect: no black bars in {len(boxes)} samples")
        return 0
    crop = f"{width}:{height}:{left}:{top}"
    plugin_api.set_overrides(crop=crop)
    print(f"cropdetect: {info.width}x{info.height} -> crop {crop} ({len(boxes)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
