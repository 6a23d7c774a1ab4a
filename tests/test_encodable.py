"""What x265 can never encode is refused at plan time, with a line that says what to do."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from ute.encodable import chroma_subsampling, refusal
from ute.probe import SourceInfo
from ute.settings import EncodeSettings

SOURCE = SourceInfo(
    path="/in/odd.mkv", size=1, mtime_ns=1, container="matroska,webm", streams=(), chapters=0,
    start_time_us=0, video_index=0, codec="ffv1", width=321, height=181, pix_fmt="yuv420p",
    time_base=Fraction(1, 1000), fps=24.0, frame_count=48, keyframes=(0,), keyframe_pts=(0,),
    first_pts=0, duration_pts=2000, variable_frame_rate=False,
)  # fmt: skip


@pytest.mark.parametrize(
    ("pix_fmt", "subsampling"),
    [("yuv420p", (2, 2)), ("yuvj420p", (2, 2)), ("yuv420p10le", (2, 2)), ("nv12", (2, 2)), ("p010le", (2, 2)),
     ("yuv422p10le", (2, 1)), ("yuyv422", (2, 1)), ("yuv444p", (1, 1)), ("gbrp", (1, 1)), ("gray", (1, 1)),
     ("yuv411p", (4, 1)), ("yuv440p", (1, 2))],
)  # fmt: skip
def test_chroma_subsampling_by_pixel_format(pix_fmt: str, subsampling: tuple[int, int]) -> None:
    assert chroma_subsampling(pix_fmt) == subsampling


def test_an_odd_sized_420_source_is_refused_with_a_crop_that_works() -> None:
    reason = refusal(SOURCE, EncodeSettings())
    assert reason is not None and reason.startswith("odd.mkv: ") and "--crop 320:180:0:0" in reason
    assert refusal(SOURCE, EncodeSettings(crop="320:180:0:0")) is None
    assert refusal(dataclasses.replace(SOURCE, pix_fmt="yuv444p"), EncodeSettings()) is None
    assert "--crop 320:181:0:0" in (refusal(dataclasses.replace(SOURCE, pix_fmt="yuv422p"), EncodeSettings())
                                    or "")  # fmt: skip


def test_a_crop_outside_the_picture_is_refused() -> None:
    reason = refusal(SOURCE, EncodeSettings(crop="320:180:2:2"))
    assert "reaches outside the 321x181 picture" in (reason or "")


def test_a_still_picture_is_no_video() -> None:
    still = dataclasses.replace(SOURCE, container="image2", codec="mjpeg", frame_count=1, width=320,
                                height=180)  # fmt: skip
    assert "a single picture (mjpeg), not a video" in (refusal(still, EncodeSettings()) or "")
