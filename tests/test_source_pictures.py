"""The verifier's pictures of the source (facts.pictures_at): reached from a keyframe without
decoding the frames nothing refers to, and still exactly those of a decode of every frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from media import make_clip

from ute import facts, verify
from ute.probe import probe

B_FRAMES = ("-bf", "3", "-x264-params", "bframes=3:b-adapt=0:b-pyramid=none")
HEVC = ("-c:v", "libx265", "-x265-params", "bframes=3:log-level=error")


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each pass of facts._decode_from skipped unreferenced frames, in order."""
    decode_from = facts._decode_from
    recorded: list[bool] = []

    def recording(*args: Any, skip_unwanted: bool, **kwargs: Any) -> dict[int, Any] | None:
        recorded.append(skip_unwanted)
        return decode_from(*args, skip_unwanted=skip_unwanted, **kwargs)

    monkeypatch.setattr(facts, "_decode_from", recording)
    return recorded


def every_frame(path: Path) -> dict[int, Any]:
    """Each frame's grey picture by its pts, from one decode of the whole file."""
    shrink = verify.cropped_shrink(None)
    with av.open(str(path)) as container:
        frames = [frame for frame in container.decode(container.streams.video[0]) if frame.pts is not None]
        return {frame.pts: shrink(frame.to_ndarray(format="gray")) for frame in frames}


def targets_in_every_gop(path: Path) -> dict[int, int | None]:
    """A B-frame, a P-frame and the last frame of each GOP, each with its GOP's keyframe."""
    info, pts_list = probe(path), facts.read_facts(path).frame_pts
    wanted: dict[int, int | None] = {}
    ends = [*info.keyframes[1:], len(pts_list)]
    for keyframe, end in zip(info.keyframes, ends, strict=True):
        start = None if keyframe == 0 else info.keyframe_pts_at(keyframe)
        for position in (keyframe + 1, keyframe + 4, end - 1):
            wanted[pts_list[position]] = start
    return wanted


@pytest.mark.parametrize("name", ["bframes.mkv", "bframes.ts", "bframes.mp4"])
def test_pictures_skipping_unreferenced_frames_are_those_of_a_full_decode(
    tmp_path: Path, name: str, passes: list[bool]
) -> None:  # fmt: skip
    source = make_clip(tmp_path / name, seconds=4, fps=25, gop=25, extra_video_args=B_FRAMES)
    wanted = targets_in_every_gop(source)
    pictures = facts.pictures_at(source, 0, wanted, verify.cropped_shrink(None))
    full = every_frame(source)
    assert sorted(pictures) == sorted(wanted)
    assert all(np.array_equal(pictures[pts], full[pts]) for pts in wanted)
    assert passes and all(passes), "every picture came from a pass that skips (MPEG-TS may seek again)"


def test_targets_that_do_not_come_out_while_skipping_are_read_again_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    source = make_clip(tmp_path / "bframes.mkv", seconds=2, fps=25, gop=25, extra_video_args=B_FRAMES)
    wanted = targets_in_every_gop(source)
    decode_from = facts._decode_from
    passes: list[bool] = []

    def missing_while_skipping(*args: Any, skip_unwanted: bool, **kwargs: Any) -> dict[int, Any] | None:
        passes.append(skip_unwanted)
        return None if skip_unwanted else decode_from(*args, skip_unwanted=skip_unwanted, **kwargs)

    monkeypatch.setattr(facts, "_decode_from", missing_while_skipping)
    pictures = facts.pictures_at(source, 0, wanted, verify.cropped_shrink(None))
    full = every_frame(source)
    assert all(np.array_equal(pictures[pts], full[pts]) for pts in wanted)
    assert True in passes and passes[-1] is False


def test_hevc_sources_are_decoded_in_full(tmp_path: Path, passes: list[bool]) -> None:
    """HEVC's sub-layer non-reference pictures may be referred to by a higher sub-layer."""
    source = make_clip(tmp_path / "hevc.mkv", seconds=2, fps=25, gop=25, extra_video_args=HEVC)
    wanted = targets_in_every_gop(source)
    pictures = facts.pictures_at(source, 0, wanted, verify.cropped_shrink(None))
    full = every_frame(source)
    assert all(np.array_equal(pictures[pts], full[pts]) for pts in wanted)
    assert passes and not any(passes)
