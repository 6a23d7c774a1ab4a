"""What no more bytes can turn into a video is refused as soon as it has settled; an incomplete
video waits the stall window (it may be a copy that stalled)."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from conftest import wait_for
from media import SUBTITLES, make_clip

from ute import commands, runner, tools
from ute.errors import NotMediaError, NoVideoError, ProbeError
from ute.inbox import Arrival, InboxLayout, InboxWatcher, Refusal
from ute.probe import probe
from ute.settings import EncodeSettings

SETTLE = 0.3


@pytest.fixture
def layout(tmp_path: Path) -> InboxLayout:
    layout = InboxLayout(tmp_path / "inbox")
    layout.create()
    return layout


def ffmpeg(*args: str) -> None:
    runner.run([tools.ffmpeg(), "-nostdin", "-v", "error", "-y", *args])


def audio_only(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", f"file:{path}")
    return path


def still_picture(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180", "-frames:v", "1", f"file:{path}")
    return path


def truncated(clip: Path, target: Path, size: int | None = None) -> Path:
    data = clip.read_bytes()
    target.write_bytes(data[: len(data) // 2 if size is None else size])
    return target


def poll_until(watcher: InboxWatcher, done: Callable[[list[Arrival | Refusal]], bool],
               what: str) -> list[Arrival | Refusal]:  # fmt: skip
    results: list[Arrival | Refusal] = []

    def enough() -> bool:
        results.extend(watcher.poll())
        return done(results)

    wait_for(enough, what, timeout=120)
    return results


def test_files_that_are_no_video_are_refused_once_settled(layout: InboxLayout, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    whole = make_clip(staging / "whole.mkv", seconds=6)
    (staging / "notes.txt").write_text("this is not a video\n" * 50)
    (staging / "report.mkv").write_text("this is not a video either\n" * 50)
    audio_only(staging / "song.m4a")
    still_picture(staging / "still.png")
    (staging / "movie.srt").write_text(SUBTITLES, encoding="utf-8")
    truncated(whole, staging / "half.mkv")
    for name in ("notes.txt", "report.mkv", "song.m4a", "still.png", "movie.srt", "half.mkv"):
        (staging / name).rename(layout.root / name)

    # With a stall window this long, a test that waited for it would time out.
    watcher = InboxWatcher(layout, SETTLE, stall_seconds=300, rescan_seconds=0.1)
    try:
        results = poll_until(watcher, lambda found: len(found) >= 5, "the five non-videos to be refused")
        deadline = time.monotonic() + 2  # the truncated copy settled as long ago as the others
        while time.monotonic() < deadline:
            results += watcher.poll()
            time.sleep(0.05)
    finally:
        watcher.stop()

    assert all(isinstance(result, Refusal) for result in results)
    reasons = {result.path.name: result.reason for result in results if isinstance(result, Refusal)}
    assert sorted(reasons) == ["movie.srt", "notes.txt", "report.mkv", "song.m4a", "still.png"]
    assert "a text file, not a video" in reasons["notes.txt"]
    assert "not a media file (FFmpeg cannot read it" in reasons["report.mkv"]
    assert "has no video stream (only audio aac)" in reasons["song.m4a"]
    assert "has no video stream (only subtitle" in reasons["movie.srt"]
    assert "a single picture (png), not a video; UTE encodes videos only" in reasons["still.png"]
    for name, reason in reasons.items():
        assert "\n" not in reason and name in reason
        layout.move_to_failed(layout.root / name, reason)  # what the service does with a Refusal
        assert (layout.failed / f"{name}.error.txt").read_text() == reason + "\n"
    assert sorted(p.name for p in layout.failed.iterdir() if not p.name.endswith(".error.txt")) == [
        "movie.srt", "notes.txt", "report.mkv", "song.m4a", "still.png"]  # fmt: skip
    assert [p.name for p in layout.candidates()] == ["half.mkv"]


def test_an_incomplete_video_waits_the_stall_window(layout: InboxLayout, tmp_path: Path) -> None:
    whole = make_clip(tmp_path / "whole.mkv", seconds=6)
    truncated(whole, layout.root / "half.mkv")
    watcher = InboxWatcher(layout, SETTLE, stall_seconds=3.0, rescan_seconds=0.1)
    try:
        started = time.monotonic()
        results = poll_until(watcher, bool, "the truncated copy to be refused after the stall window")
        waited = time.monotonic() - started
    finally:
        watcher.stop()
    assert [(type(r), r.path.name) for r in results] == [(Refusal, "half.mkv")]
    assert "truncated" in results[0].reason  # type: ignore[union-attr]
    assert waited >= 3.0


def test_the_probe_tells_what_no_bytes_can_fix(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("plain text\n" * 20)
    (tmp_path / "notes.mkv").write_text("plain text\n" * 20)
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 20)
    with zipfile.ZipFile(tmp_path / "archive.mp4", "w") as archive:
        archive.writestr("a.txt", "hello " * 1000)
    for name in ("notes.txt", "notes.mkv", "doc.pdf", "archive.mp4"):
        with pytest.raises(NotMediaError):
            probe(tmp_path / name)
    with pytest.raises(NoVideoError, match="has no video stream"):
        probe(audio_only(tmp_path / "song.m4a"))
    (tmp_path / "movie.srt").write_text(SUBTITLES, encoding="utf-8")
    with pytest.raises(NoVideoError, match="has no video stream"):
        probe(tmp_path / "movie.srt")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for name in ("clip.mkv", "clip.mp4", "clip.ts"):
        make_clip(folder / name, seconds=6, audio_tracks=1)
    make_clip(folder / "faststart.mp4", seconds=6, audio_tracks=1, container_args=("-movflags", "+faststart"))
    # MPEG-PS has no header: FFmpeg adds each stream as its first packet comes, here the audio's.
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=24:d=3", "-f", "lavfi", "-i", "sine=d=3",
           "-map", "1:a", "-map", "0:v", "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob",
           f"file:{folder / 'audio-first.mpg'}")  # fmt: skip
    return folder


@pytest.mark.parametrize("name", ["clip.mkv", "clip.mp4", "faststart.mp4", "clip.ts", "audio-first.mpg"])
@pytest.mark.parametrize("size", [3, 16, 300, 1024, 4096, None])
def test_a_cut_copy_of_a_video_is_never_a_verdict(videos: Path, tmp_path: Path, name: str,
                                                  size: int | None) -> None:  # fmt: skip
    """Whatever its first bytes hold, an incomplete copy only gets the ProbeError that waits."""
    cut = truncated(videos / name, tmp_path / name, size)
    try:
        probe(cut)
    except (NotMediaError, NoVideoError) as error:
        pytest.fail(f"a cut copy was given a verdict: {error}")
    except ProbeError:
        pass


def test_an_mp4_without_its_moov_waits(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=6)  # its moov comes last
    data = clip.read_bytes()
    assert data.rfind(b"moov") > len(data) // 2
    cut = truncated(clip, tmp_path / "cut.mp4", data.rfind(b"moov") - 4)
    with pytest.raises(ProbeError, match="FFmpeg cannot read it") as raised:
        probe(cut)
    assert not isinstance(raised.value, NotMediaError | NoVideoError)


@pytest.mark.parametrize("content", [b"", b"\0" * 65536], ids=["empty", "preallocated"])
def test_an_empty_or_preallocated_file_waits(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "copy.mkv").write_bytes(content)
    with pytest.raises(ProbeError) as raised:
        probe(tmp_path / "copy.mkv")
    assert not isinstance(raised.value, NotMediaError | NoVideoError)


@pytest.mark.parametrize(
    "text",
    ["#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:3.0,\n{video}\n#EXT-X-ENDLIST\n",
     "\ufeff#EXTM3U\n#EXTINF:3.0,\nhttp://127.0.0.1:9/segment.ts\n",
     "ffconcat version 1.0\nfile '{video}'\n",
     '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"></MPD>\n',
     "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=video 9 RTP/AVP 96\n"],
)
def test_a_playlist_naming_other_files_is_refused_before_ffmpeg_opens_it(tmp_path: Path, text: str) -> None:
    """An HLS playlist in the inbox probed as a 75-frame video made of whatever file it named."""
    video = make_clip(tmp_path / "elsewhere.mkv", seconds=1)
    playlist = tmp_path / "movie.m3u8"
    playlist.write_text(text.format(video=video), encoding="utf-8")
    with pytest.raises(NotMediaError, match="a playlist or stream description"):
        probe(playlist)


def test_ffmpeg_reads_a_source_with_local_files_only() -> None:
    argv = commands.encode_chunk("ffmpeg", PurePosixPath("/in/a.mkv"), 0, commands.ChunkInput(0, 24, None),
                                 EncodeSettings(), PurePosixPath("/w/a.part"))  # fmt: skip
    assert argv[argv.index("-i") - 2 : argv.index("-i")] == ["-protocol_whitelist", "file"]
