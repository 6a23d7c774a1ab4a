"""`ute encode` end to end, as a user runs it: real Redis, real rq workers, real x265."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_ute
from media import frame_hashes, make_clip
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from ute import state
from ute.probe import probe

pytestmark = pytest.mark.slow

LOSSLESS = ["--x265-params", "lossless=1", "--preset", "ultrafast"]


def test_lossless_chunked_encode_is_frame_exact_and_keeps_every_stream(
    tmp_path: Path, clean_redis: str
) -> None:
    source = make_clip(tmp_path / "movie.mkv", seconds=8, fps=24, gop=24, audio_tracks=2,
                       subtitles=True, chapters=True)  # fmt: skip
    output = tmp_path / "out" / "movie.mkv"
    output.parent.mkdir()
    run = run_ute("encode", source, "-o", output, "--workers", "2", "--redis-url", clean_redis,
              "--chunk-frames", "24", *LOSSLESS)  # fmt: skip
    assert run.returncode == 0, run.stderr

    assert frame_hashes(output) == frame_hashes(source)
    result, original = probe(output), probe(source)
    assert [s.kind for s in result.streams] == ["video", "audio", "audio", "subtitle"]
    assert result.codec == "hevc"
    assert result.chapters == 2
    assert abs(result.duration_seconds - original.duration_seconds) <= original.frame_seconds

    connection = state.connect(clean_redis)
    queue = Queue(state.QUEUE_LOW, connection=connection, serializer=JSONSerializer)
    finished = Job.fetch_many(FinishedJobRegistry(queue=queue).get_job_ids(),
                              connection=connection, serializer=JSONSerializer)  # fmt: skip
    assert len(finished) == 8
    assert len({job.worker_name for job in finished}) == 2
    assert not (output.parent / ".ute-work").exists()


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("bframes.mp4", ("-bf", "3", "-x264-params", "bframes=3:b-adapt=0")),
        ("offset.ts", ()),
    ],
)
def test_b_frames_and_a_late_container_start_stay_frame_exact(
    tmp_path: Path, name: str, extra: tuple[str, ...]
) -> None:
    source = make_clip(tmp_path / name, seconds=4, fps=25, gop=25, audio_tracks=1,
                       extra_video_args=extra)  # fmt: skip
    output = tmp_path / "out.mkv"
    run = run_ute("encode", source, "-o", output, "--chunk-frames", "25", *LOSSLESS)
    assert run.returncode == 0, run.stderr
    assert frame_hashes(output) == frame_hashes(source)


def test_awkward_file_names_work(tmp_path: Path) -> None:
    folder = tmp_path / "my videos; $(rm -rf)"
    folder.mkdir()
    source = make_clip(folder / "-It's a \"Test\" — ünï.mkv", seconds=2, audio_tracks=1)
    output = folder / "-Out: it's \"done\" — ünï.mkv"
    run = run_ute("encode", source, "-o", output, "--preset", "ultrafast", "--chunk-frames", "24")
    assert run.returncode == 0, run.stderr
    assert probe(output).frame_count == 48


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"not a video\n" * 100, "FFmpeg cannot read it"), (None, "truncated")],
)
def test_bad_input_gives_one_line_and_writes_nothing(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    source = tmp_path / "input.mkv"
    if content is None:
        whole = make_clip(tmp_path / "whole.mkv", seconds=8).read_bytes()
        content = whole[: len(whole) // 2]
    source.write_bytes(content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = run_ute("encode", source, "-o", out_dir / "input.mkv")
    assert run.returncode != 0
    assert run.stderr.count("\n") == 1 and message in run.stderr and "input.mkv" in run.stderr
    assert list(out_dir.iterdir()) == []
    assert source.read_bytes() == content


def test_an_existing_output_is_not_replaced_without_force(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "a.mkv", seconds=1)
    output = tmp_path / "b.mkv"
    output.write_bytes(b"keep me")
    run = run_ute("encode", source, "-o", output)
    assert run.returncode == 1 and "--force" in run.stderr
    assert output.read_bytes() == b"keep me"
