"""Can x265 encode this source as it is? Pure: decided at plan time, before any chunk is queued.

What can never work fails the file at once with one line that says what to do, instead of
failing every chunk four times over minutes.
"""

from __future__ import annotations

import re

from ute.probe import SourceInfo
from ute.settings import EncodeSettings

# Demuxers of still pictures: a .jpg or .png dropped into the inbox is no video.
STILL_IMAGE_FORMATS = re.compile(r"^(image2|.*_pipe)$")
# Chroma subsampling (luma samples per chroma sample, across and down) by pixel format name.
_SUBSAMPLING_MARKS = (("411", (4, 1)), ("410", (4, 4)), ("420", (2, 2)), ("422", (2, 1)), ("440", (1, 2)))
_PACKED_420 = re.compile(r"^(nv12|nv21|p01[026])")
_PACKED_422 = re.compile(r"^(nv16|p21[026]|yuyv|uyvy|yvyu|y210)")


def chroma_subsampling(pix_fmt: str) -> tuple[int, int]:
    """How many luma samples share one chroma sample, across and down."""
    for mark, subsampling in _SUBSAMPLING_MARKS:
        if mark in pix_fmt:
            return subsampling
    if _PACKED_420.match(pix_fmt):
        return (2, 2)
    if _PACKED_422.match(pix_fmt):
        return (2, 1)
    return (1, 1)


def still_picture(info: SourceInfo) -> str | None:
    """Why this is no video but a picture (whatever the settings), or None."""
    if STILL_IMAGE_FORMATS.match(info.container) or info.frame_count < 2:
        return f"{info.path}: a single picture ({info.codec}), not a video; UTE encodes videos only"
    return None


def refusal(info: SourceInfo, settings: EncodeSettings) -> str | None:
    """Why this source cannot be encoded with these settings, as one line; None if it can."""
    name = info.path.rsplit("/", 1)[-1]
    picture = still_picture(info)
    if picture:
        return picture
    width, height = info.width, info.height
    if settings.crop:
        crop_width, crop_height, x, y = (int(part) for part in settings.crop.split(":"))
        if x + crop_width > width or y + crop_height > height:
            return (f"{name}: crop {settings.crop} reaches outside the {width}x{height} picture; "
                    "choose a crop inside it")  # fmt: skip
        width, height = crop_width, crop_height
    across, down = chroma_subsampling(info.pix_fmt)
    if width % across or height % down:
        even_width, even_height = width - width % across, height - height % down
        return (f"{name}: x265 cannot encode {width}x{height} in {info.pix_fmt} (its size must be a "
                f"multiple of {across}x{down}); crop it, e.g. --crop {even_width}:{even_height}:0:0 "
                f"(or crop = \"{even_width}:{even_height}:0:0\" in {name}.ute.toml)")  # fmt: skip
    return None
