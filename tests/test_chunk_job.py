"""The chunk encoder itself, called directly: real ffmpeg, real files, no queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from media import make_clip

from ute import jobs, pipeline
from ute.errors import EncodeError
from ute.plan import Chunk
from ute.probe import count_frames, probe
from ute.settings import EncodeSettings


def specs_for(source: Path, work_dir: Path, start_keyframe: int, frames: int
              ) -> tuple[jobs.FileSpec, jobs.ChunkSpec]:  # fmt: skip
    info = probe(source)
    file = jobs.FileSpec(str(source), info.video_index, str(work_dir),
                         EncodeSettings(preset="ultrafast").to_json())  # fmt: skip
    [chunk] = pipeline.chunk_specs(info, [Chunk(1, start_keyframe, start_keyframe + frames)], "test")
    return file, chunk


def test_a_chunk_is_encoded_verified_and_committed(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=3, gop=24)
    result = jobs.encode(*specs_for(source, tmp_path, 24, 24))
    assert result["frames"] == 24 and not result["reused"]
    assert count_frames(tmp_path / jobs.segment_name(1)) == 24
    assert list(tmp_path.glob("*.part")) == []
    assert any("encoded 24 frames" in line for line in result["log"]), result["log"]


def test_a_finished_segment_is_reused(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=2, gop=24)
    specs = specs_for(source, tmp_path, 24, 24)
    jobs.encode(*specs)
    assert jobs.encode(*specs)["reused"]


def test_too_few_frames_is_a_failure_not_a_success(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src.mkv", seconds=2, gop=24)
    with pytest.raises(EncodeError, match="wrote 24 of 30 frames"):
        jobs.encode(*specs_for(source, tmp_path, 24, 30))
    assert not (tmp_path / jobs.segment_name(1)).exists()
    assert list(tmp_path.glob("*.part")) == []


def test_an_encoder_failure_names_the_chunk_but_not_the_file_name(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "src<script>x.mkv", seconds=2, gop=24)
    specs = specs_for(source, tmp_path, 24, 24)
    source.unlink()
    with pytest.raises(EncodeError, match=r"chunk 1 of file test: .*exited with status") as raised:
        jobs.encode(*specs)
    assert "<script>" not in str(raised.value)  # rq-dashboard shows failures unescaped
