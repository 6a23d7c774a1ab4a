"""The chunk job itself, called directly: real ffmpeg, real files, no queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from media import make_clip

from ute import jobs
from ute.errors import EncodeError
from ute.probe import count_frames, probe
from ute.settings import EncodeSettings


def spec_for(source: Path, segment: Path, start_keyframe: int, frames: int) -> dict:
    info = probe(source)
    pts = info.keyframe_pts[info.keyframes.index(start_keyframe)]
    return jobs.ChunkSpec(
        file_id="test", source=str(source), video_index=info.video_index, index=1,
        start=start_keyframe, frames=frames,
        seek_microseconds=round(info.seconds_from_start(pts) * 1_000_000),
        segment=str(segment), settings=EncodeSettings(preset="ultrafast").to_json(),
    ).to_json()  # fmt: skip


def test_a_chunk_is_encoded_verified_and_committed(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=3, gop=24)
    segment = tmp_path / "00001.mkv"
    result = jobs.encode_chunk(spec_for(source, segment, 24, 24))
    assert result["frames"] == 24 and not result["reused"]
    assert count_frames(segment) == 24
    assert list(tmp_path.glob("*.part")) == []


def test_a_finished_segment_is_reused(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=2, gop=24)
    spec = spec_for(source, tmp_path / "00001.mkv", 24, 24)
    jobs.encode_chunk(spec)
    assert jobs.encode_chunk(spec)["reused"]


def test_too_few_frames_is_a_failure_not_a_success(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=2, gop=24)
    segment = tmp_path / "00001.mkv"
    with pytest.raises(EncodeError, match="wrote 24 of 30 frames"):
        jobs.encode_chunk(spec_for(source, segment, 24, 30))
    assert not segment.exists()
    assert list(tmp_path.glob("*.part")) == []


def test_an_encoder_failure_names_the_chunk_and_the_file(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=2, gop=24)
    spec = spec_for(source, tmp_path / "00001.mkv", 24, 24)
    source.unlink()
    with pytest.raises(EncodeError, match=r"chunk 1 of 'src.mkv': .*exited with status"):
        jobs.encode_chunk(spec)
