from __future__ import annotations

from pathlib import Path

import pytest
from media import make_clip

from ute.errors import ProbeError
from ute.probe import count_frames, probe


def test_probe_finds_frames_keyframes_and_streams(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", seconds=4, fps=24, gop=24, audio_tracks=2,
                     subtitles=True, chapters=True)  # fmt: skip
    info = probe(clip)
    assert info.frame_count == 96
    assert info.fps == 24
    assert info.keyframes == (0, 24, 48, 72)
    assert [s.kind for s in info.streams] == ["video", "audio", "audio", "subtitle"]
    assert info.chapters == 2
    assert info.video_index == 0
    assert (info.width, info.height) == (320, 180)
    assert info.keyframe_pts_at(24) == info.keyframe_pts[1]
    with pytest.raises(ValueError, match="not a keyframe"):
        info.keyframe_pts_at(25)
    assert abs(info.duration_seconds - 4.0) < 0.002
    assert not info.variable_frame_rate


def test_keyframes_are_counted_in_presentation_order_with_b_frames(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "bframes.mp4", seconds=4, fps=25, gop=25,
                     extra_video_args=("-bf", "3", "-x264-params", "bframes=3:b-adapt=0"))  # fmt: skip
    info = probe(clip)
    assert info.frame_count == 100
    assert info.keyframes == (0, 25, 50, 75)


def test_seek_times_count_from_the_container_start(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "stream.ts", seconds=4, fps=25, gop=50)
    info = probe(clip)
    assert info.start_time_us > 0  # MPEG-TS starts at 1.4 s
    assert info.seconds_from_start(info.keyframe_pts[0]) == pytest.approx(0, abs=0.05)
    assert info.seconds_from_start(info.keyframe_pts[1]) == pytest.approx(2.0, abs=0.05)


def test_count_frames_reads_packets(tmp_path: Path) -> None:
    assert count_frames(make_clip(tmp_path / "c.mkv", seconds=2)) == 48
    assert count_frames(tmp_path / "missing.mkv") == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"this is not a video\n" * 10, "FFmpeg cannot read it"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(content)
    with pytest.raises(ProbeError, match=message) as raised:
        probe(bad)
    assert "\n" not in str(raised.value)
    assert "bad.mkv" in str(raised.value)


def test_truncated_copy_is_refused(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "whole.mkv", seconds=8)
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(ProbeError, match="truncated"):
        probe(truncated)


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    from ute import runner, tools

    audio = tmp_path / "audio.mka"
    runner.run([tools.ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "sine=d=1", f"file:{audio}"])
    with pytest.raises(ProbeError, match="no video stream"):
        probe(audio)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot read it"):
        probe(tmp_path / "nope.mkv")
