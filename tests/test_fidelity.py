"""The corpus of real-world source shapes through `ute encode`, checked by an independent reader.

Every shape (tests/corpus.py) is encoded losslessly by two real workers in 24-frame chunks and
must come back frame-exact with every stream, tag, flag, attachment and chapter, as
tests/independent.py (PyAV only, no UTE code) sees them; a lossy encode of every shape must pass
UTE's own verifier; and the verifier must reject outputs doctored the ways real bugs did.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import corpus
import independent
import pytest
from conftest import run_ute

from ute import concat, facts, jobs, pipeline, runner, tools, verify
from ute.errors import EncodeError, VerifyError
from ute.probe import probe
from ute.settings import EncodeSettings

pytestmark = pytest.mark.slow

LOSSLESS = ("--x265-params", "lossless=1", "--preset", "ultrafast", "--chunk-frames", "24")
SHAPES = [pytest.param(shape.name, id=shape.name) for shape in corpus.SHAPES]


@pytest.fixture(scope="module")
def two_workers(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two real workers shared by the module's encodes (`ute encode --workers 0` uses them)."""
    logs = tmp_path_factory.mktemp("workers")
    workers = [runner.spawn([sys.executable, "-m", "ute.worker", "--redis-url", redis_url, "--name",
                             f"corpus-{number}"], log_path=logs / f"{number}.log")
               for number in (1, 2)]  # fmt: skip
    yield redis_url
    runner.stop(workers, cold=True, grace_seconds=5)


def encode(source: Path, output: Path, redis_url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return run_ute("encode", source, "-o", output, "--workers", "0", "--redis-url", redis_url, *options)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_comes_back_frame_exact_with_everything_it_had(
    shape: str, tmp_path: Path, two_workers: str
) -> None:
    source = corpus.make(shape, tmp_path)
    output = tmp_path / "out" / "encoded.mkv"
    output.parent.mkdir()
    run = encode(source, output, two_workers, *LOSSLESS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(pipeline.plan_for(probe(source), EncodeSettings(chunk_frames=24))) >= 2
    original = independent.describe(source)
    result = independent.describe(output, pixel_format=original["video"]["pixel_format"])
    assert independent.compare(original, result) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_encoded_lossy_passes_the_verifier(shape: str, tmp_path: Path, two_workers: str) -> None:
    source = corpus.make(shape, tmp_path)
    output = tmp_path / "encoded.mkv"
    run = encode(source, output, two_workers, "--preset", "ultrafast", "--crf", "32", "--chunk-frames", "24")
    assert run.returncode == 0, run.stderr[-3000:]
    assert output.exists()


def encoded_in_process(source: Path, work: Path, **settings: object) -> pipeline.PreparedFile:
    """A file's segments, encoded here without a queue, ready to be muxed (or doctored first)."""
    prepared = pipeline.prepare(probe(source), EncodeSettings(preset="ultrafast", chunk_frames=24,
                                                              **settings), work)  # type: ignore[arg-type]
    prepared.work_dir.mkdir(parents=True)
    for spec in prepared.specs:
        jobs.encode(prepared.file_spec, spec)
    return prepared


def test_an_output_with_two_chunks_swapped_fails_verification(tmp_path: Path) -> None:
    """Same frame count, same timestamps, every stream there: only the pictures tell."""
    source = corpus.make("mkv_many_tracks", tmp_path)
    prepared = encoded_in_process(source, tmp_path / "work")
    first, second = (prepared.work_dir / jobs.segment_name(index) for index in (0, 1))
    assert prepared.chunks[0].frames == prepared.chunks[1].frames
    first.rename(tmp_path / "swap")
    second.rename(first)
    (tmp_path / "swap").rename(second)
    output = tmp_path / "out.mkv"
    with pytest.raises(VerifyError, match=r"frame 0 \(chunk 0\): picture is 'frame 24'"):
        pipeline.finalize(prepared, output)
    assert not output.exists() and list(tmp_path.glob(".out.mkv.*")) == []


def test_an_output_with_a_chunk_of_garbage_fails_verification(tmp_path: Path) -> None:
    """The AVI bug: a chunk whose pictures are grey garbage, of the right length."""
    source = corpus.make("webm_vp9", tmp_path)
    prepared = encoded_in_process(source, tmp_path / "work")
    chunk = prepared.chunks[1]
    info = probe(source)
    grey = tmp_path / "grey.mkv"
    runner.run([tools.ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
                f"color=c=gray:s={info.width}x{info.height}:r={info.fps}", "-frames:v", str(chunk.frames),
                "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                "-pix_fmt", info.pix_fmt, f"file:{grey}"])  # fmt: skip
    grey.replace(prepared.work_dir / jobs.segment_name(chunk.index))
    with pytest.raises(VerifyError, match=rf"frame {chunk.start} \(chunk 1\): picture PSNR"):
        pipeline.finalize(prepared, tmp_path / "out.mkv")


def test_chunks_swapped_with_their_own_checks_fail_verification(tmp_path: Path) -> None:
    """A worker that encoded the wrong part of the source writes a check true to its segment:
    the pictures still tell."""
    source = corpus.make("mkv_many_tracks", tmp_path)
    prepared = encoded_in_process(source, tmp_path / "work")
    for name in (jobs.segment_name(0), jobs.segment_name(0) + verify.CHECK_SUFFIX):
        first, second = prepared.work_dir / name, prepared.work_dir / name.replace("00000", "00001")
        first.rename(tmp_path / "swap")
        second.rename(first)
        (tmp_path / "swap").rename(second)
    with pytest.raises(VerifyError, match=r"frame 0 \(chunk 0\): picture is 'frame 24'"):
        pipeline.finalize(prepared, tmp_path / "out.mkv")


def test_the_output_is_proved_from_its_segments_packets_not_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    source = corpus.make("mp4_bframes", tmp_path)
    prepared = encoded_in_process(source, tmp_path / "work")
    segments = [prepared.work_dir / jobs.segment_name(chunk.index) for chunk in prepared.chunks]
    assert all(verify.check_path(segment).exists() for segment in segments)
    decoded: list[str] = []
    real_decode_all = facts.decode_all
    monkeypatch.setattr(facts, "decode_all", lambda path, *rest: decoded.append(Path(path).name)
                        or real_decode_all(path, *rest))  # fmt: skip
    verified = pipeline.finalize(prepared, tmp_path / "out.mkv")
    assert decoded == [] and verified.frames == prepared.info.frame_count
    pipeline.finalize(prepared, tmp_path / "full.mkv", full_verify=True)
    assert decoded == [".full.mkv." + prepared.work_id + ".part"]


def test_an_output_whose_packets_are_not_its_segments_fails_verification(tmp_path: Path) -> None:
    """The mux is proved packet by packet: a segment encoded again after the mux (same frames,
    other bytes, a check of its own) no longer matches what the output holds."""
    source = corpus.make("mkv_many_tracks", tmp_path)
    prepared = encoded_in_process(source, tmp_path / "work")
    output = tmp_path / "out.mkv"
    concat.mux(prepared.info, facts.read_facts(source), prepared.chunks, prepared.work_dir, output)
    segment = prepared.work_dir / jobs.segment_name(1)
    segment.unlink()
    verify.check_path(segment).unlink()
    again = dataclasses.replace(prepared.file_spec, settings={**prepared.file_spec.settings, "crf": 40})
    jobs.encode(again, prepared.specs[1])
    with pytest.raises(VerifyError, match=r"packets as muxed from the segments \(from packet 24\)"):
        verify.verify_output(prepared.info, facts.read_facts(source), prepared.chunks, output,
                             work_dir=prepared.work_dir)  # fmt: skip


def test_bad_x265_values_fail_at_plan_time_in_x265s_words(tmp_path: Path) -> None:
    source = corpus.make("webm_vp9", tmp_path)
    run = run_ute("encode", source, "-o", tmp_path / "out.mkv", "--x265-params", "aq-mode=99")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "ute: error: the encoder refuses x265 parameters 'aq-mode=99' (preset medium, crf 28): "
        "Aq-Mode is out of range | Cannot open libx265 encoder."
    )


@pytest.fixture(scope="module")
def verified_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[pipeline.PreparedFile, Path]:
    """A source with many tracks and fonts, and its encode that passed the verifier."""
    folder = tmp_path_factory.mktemp("verified")
    source = corpus.make("mkv_many_tracks", folder)
    fonts = corpus.make("mkv_fonts_ass", folder)
    with_fonts = folder / "with_fonts.mkv"  # the many tracks, plus the fonts' attachments
    runner.run([tools.ffmpeg(), "-v", "error", "-i", f"file:{source}", "-i", f"file:{fonts}", "-map", "0",
                "-map", "1:t", "-c", "copy", f"file:{with_fonts}"])  # fmt: skip
    prepared = encoded_in_process(with_fonts, folder / "work")
    output = folder / "out.mkv"
    pipeline.finalize(prepared, output)
    return prepared, output


def remux(output: Path, doctored: Path, *doctoring: str) -> Path:
    runner.run([tools.ffmpeg(), "-v", "error", "-i", f"file:{output}", "-map", "0", "-map_metadata", "0",
                "-c", "copy", *doctoring, "-default_mode", "passthrough", f"file:{doctored}"])  # fmt: skip
    return doctored


def test_a_plain_remux_of_a_verified_output_still_verifies(
    verified_output: tuple[pipeline.PreparedFile, Path], tmp_path: Path
) -> None:
    """So that in the test below, what the verifier finds is the doctoring and nothing else."""
    prepared, output = verified_output
    copy = remux(output, tmp_path / "copy.mkv")
    source = facts.read_facts(prepared.info.path)
    verified = verify.verify_output(prepared.info, source, prepared.chunks, copy)
    assert verified.frames == prepared.info.frame_count


@pytest.mark.parametrize(
    ("doctoring", "named"),
    [
        (("-metadata:s:a:0", "language=und"), "audio stream 1: language is 'und' in the output, 'eng'"),
        (("-metadata:s:a:1", "title="), "audio stream 2: title is '' in the output"),
        (("-disposition:s:1", "0"), "subtitle stream 4: flags"),
        (("-metadata:s:a:0", "MIX=other"), "audio stream 1: tag mix"),
        (("-metadata", "COMMENT=changed"), "file: tag comment"),
        (("-map_chapters", "-1"), "file: number of chapters is 0 in the output, 3 in the source"),
        (("-map", "-0:s:0"), "file: number of tracks"),
        (("-map", "-0:t:1"), "file: number of attachments"),
        (("-metadata:s:t:0", "mimetype=application/octet-stream"), "tag mimetype"),
        (("-frames:v", "40"), "video: frame count"),
    ],
)
def test_the_verifier_names_what_a_doctored_output_lost(
    verified_output: tuple[pipeline.PreparedFile, Path], tmp_path: Path, doctoring: tuple[str, ...],
    named: str,
) -> None:  # fmt: skip
    prepared, output = verified_output
    doctored = remux(output, tmp_path / "doctored.mkv", *doctoring)
    source = facts.read_facts(prepared.info.path)
    with pytest.raises(VerifyError, match="differs from its source") as raised:
        verify.verify_output(prepared.info, source, prepared.chunks, doctored)
    assert named in str(raised.value)


def test_finalize_never_writes_over_a_file_that_took_the_name_meanwhile(tmp_path: Path) -> None:
    source = corpus.make("webm_vp9", tmp_path)
    prepared = encoded_in_process(source, tmp_path / "work")
    output = tmp_path / "out.mkv"
    output.write_bytes(b"someone else's")
    with pytest.raises(EncodeError, match="another file took this name while this one was encoded"):
        pipeline.finalize(prepared, output)
    assert output.read_bytes() == b"someone else's"
    assert list(tmp_path.glob(".out.mkv.*")) == []
    pipeline.finalize(prepared, output, replace=True)  # what `ute encode --force` asks for
    assert probe(output).frame_count == prepared.info.frame_count
