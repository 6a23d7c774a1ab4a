"""The corpus makes what its names promise, and the independent checker tells kept from lost.

(a) every shape is made and described, and its defining feature is really there;
(b) a reference remux (`ffmpeg -c copy` into Matroska, with the options `corpus.remux_argv` adds)
    keeps everything: compare() finds nothing;
(c) doctored remuxes that lose one thing each are caught, by a message that names the field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import corpus
import pytest
from corpus import SHAPES, make, reference_remux, remux_argv
from independent import compare, describe

from ute import runner

SHAPE_NAMES = [shape.name for shape in SHAPES]


class Corpus:
    """Each shape made once per session, with its description and its reference remux."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[str, Path] = {}
        self.descriptions: dict[str, dict[str, Any]] = {}

    def path(self, name: str) -> Path:
        if name not in self.paths:
            self.paths[name] = make(name, self.folder)
        return self.paths[name]

    def describe(self, name: str) -> dict[str, Any]:
        if name not in self.descriptions:
            self.descriptions[name] = describe(self.path(name))
        return self.descriptions[name]


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus"))


def streams(description: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in description["streams"]
            if s["type"] == kind and "attached_pic" not in s["dispositions"]]  # fmt: skip


def intervals(description: dict[str, Any]) -> list[float]:
    times = description["video"]["frame_times"]
    return [round(b - a, 4) for a, b in itertools.pairwise(times)]


# --- (a) every shape has its defining feature ---------------------------------------------------


def many_tracks(d: dict[str, Any]) -> None:
    audio, subs = streams(d, "audio"), streams(d, "subtitle")
    assert [s["codec"] for s in audio] == ["aac", "ac3"] and [s["codec"] for s in subs] == ["subrip"] * 2
    assert [s["language"] for s in audio + subs] == ["eng", "ger", "eng", "jpn"]
    assert [s["title"] for s in audio + subs] == ["English Stereo", "Deutsch Kommentar", "English SDH",
                                                  "日本語 (forced)"]  # fmt: skip
    assert [s["dispositions"] for s in audio + subs] == [
        ["original"], ["comment", "visual_impaired"], ["hearing_impaired"], ["default", "forced"]]
    assert audio[0]["tags"]["MIX"] == "stereo downmix v2" and subs[0]["tags"]["SOURCE_ID"] == "sub-0001"
    assert [c["title"] for c in d["chapters"]] == ["Opening", "Middle: ünïcode", "End Credits"]
    assert [(c["start"], c["end"]) for c in d["chapters"]] == [(0, 1), (1, 2), (2, 3)]
    assert d["tags"]["title"] == "Many Tracks Test" and d["tags"]["COMMENT"] == "made by tests/corpus.py"
    assert subs[1]["events"][0]["text"] == "0,Default,,0,0,0,,こんにちは"


def fonts_ass(d: dict[str, Any]) -> None:
    assert [s["codec"] for s in streams(d, "subtitle")] == ["ass"]
    assert streams(d, "subtitle")[0]["events"][1]["text"] == "1,Sign,,0,0,0,,A sign on top"
    assert streams(d, "subtitle")[0]["header_md5"]
    assert [a["mimetype"] for a in d["attachments"]] == ["application/x-truetype-font", "font/ttf"]
    assert all(a["filename"].endswith(".ttf") and a["size"] > 100 for a in d["attachments"])
    assert d["attachments"][1]["tags"] == {"title": "Second font"}


def mp4_bframes(d: dict[str, Any]) -> None:
    assert d["format"].startswith("mov,mp4") and d["video"]["reordered"]
    assert d["video"]["picture_types"]["B"] > 0
    assert [(s["codec"], s["language"], s["dispositions"]) for s in d["streams"][1:]] == [
        ("aac", "fra", []), ("aac", "eng", ["default"]), ("mov_text", "fra", ["default"])]
    assert d["tags"]["creation_time"] == "2024-05-01T12:34:56.000000Z"
    assert d["tags"]["title"] == "B-frames in MP4" and d["tags"]["major_brand"] == "isom"


def mov_timecode(d: dict[str, Any]) -> None:
    data = streams(d, "data")
    assert len(data) == 1 and data[0]["tags"]["timecode"] == "01:00:00:00"
    assert data[0]["tags"]["handler_name"] == "TimeCodeHandler"
    assert d["tags"]["major_brand"] == "qt  "


def ts_offset(d: dict[str, Any]) -> None:
    assert d["format"] == "mpegts" and d["video"]["start"] > 10
    assert [(s["codec"], s["language"]) for s in streams(d, "audio")] == [("aac", "eng"), ("ac3", "spa")]


def m2ts(d: dict[str, Any]) -> None:
    assert d["format"] == "mpegts"


def avi(d: dict[str, Any]) -> None:
    assert d["format"] == "avi" and d["video"]["codec"] == "mpeg4"
    assert d["streams"][0]["codec_tag"] == "XVID" and d["video"]["picture_types"]["B"] > 0
    assert [s["codec"] for s in streams(d, "audio")] == ["mp3"]


def webm(d: dict[str, Any]) -> None:
    assert d["video"]["codec"] == "vp9" and (d["video"]["width"], d["video"]["height"]) == (160, 90)
    assert [(s["codec"], s["language"]) for s in streams(d, "audio")] == [("opus", "fin")]


def vfr_24_30(d: dict[str, Any]) -> None:
    steps = intervals(d)
    at_24 = sum(abs(s - 1 / 24) < 0.0011 for s in steps)
    at_30 = sum(abs(s - 1 / 30) < 0.0011 for s in steps)
    assert at_24 > 30 and at_30 > 40 and at_24 + at_30 == len(steps)


def vfr_jitter(d: dict[str, Any]) -> None:
    steps = intervals(d)
    assert len(set(steps)) > len(steps) / 2  # hardly two intervals alike
    assert max(steps) > 1.5 / 30 and min(steps) < 1 / 30
    assert statistics.pstdev(steps) > 0.005
    assert d["tags"]["com.example.recorder"] == "ScreenGrab 2.1"


def open_gop(d: dict[str, Any]) -> None:
    assert d["video"]["codec"] == "h264" and d["video"]["open_gop_keyframes"] >= 3


def mpeg2_ps(d: dict[str, Any]) -> None:
    assert d["format"] == "mpeg" and d["video"]["codec"] == "mpeg2video"
    assert d["video"]["open_gop_keyframes"] >= 3 and d["video"]["start"] > 0


def interlaced(d: dict[str, Any]) -> None:
    video = d["video"]
    assert video["interlaced_frames"] == video["frame_count"] == 75
    assert video["field_dominance"] == "tff" and video["field_order"] in ("tt", "tb")


def pixel_format(name: str) -> Callable[[dict[str, Any]], None]:
    def check(d: dict[str, Any]) -> None:
        assert d["video"]["pixel_format"] == name

    return check


def full_range(d: dict[str, Any]) -> None:
    assert d["video"]["colour"] == {"primaries": "bt709", "transfer": "bt709", "matrix": "bt709",
                                    "range": "pc"}  # fmt: skip


def hdr10(d: dict[str, Any]) -> None:
    video = d["video"]
    assert video["codec"] == "hevc" and video["pixel_format"] == "yuv420p10le"
    assert video["colour"] == {"primaries": "bt2020", "transfer": "smpte2084", "matrix": "bt2020nc",
                               "range": "tv"}  # fmt: skip
    assert video["mastering_display"] == {"primaries": [0.68, 0.32, 0.265, 0.69, 0.15, 0.06],
                                          "white_point": [0.3127, 0.329], "min_luminance": 0.0001,
                                          "max_luminance": 1000.0}  # fmt: skip
    assert video["content_light_level"] == {"max_cll": 1000, "max_fall": 400}


def rotation(d: dict[str, Any]) -> None:
    assert d["video"]["rotation"] == 90 and not d["video"]["mirrored"]
    assert d["video"]["display_matrix"] == [0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30]


def cover(codec: str, filename: str | None) -> Callable[[dict[str, Any]], None]:
    def check(d: dict[str, Any]) -> None:
        pictures = [s for s in d["streams"] if "attached_pic" in s["dispositions"]]
        assert [p["codec"] for p in pictures] == [codec] and pictures[0]["picture"]["size"] > 100
        assert pictures[0]["tags"].get("filename") == filename
        assert d["video"]["index"] == 0  # the main video is not the picture

    return check


def audio_offset(low: float, high: float) -> Callable[[dict[str, Any]], None]:
    def check(d: dict[str, Any]) -> None:
        assert low < streams(d, "audio")[0]["offset"] < high

    return check


FEATURES: dict[str, Callable[[dict[str, Any]], None]] = {
    "mkv_many_tracks": many_tracks,
    "mkv_fonts_ass": fonts_ass,
    "mp4_bframes": mp4_bframes,
    "mov_timecode": mov_timecode,
    "ts_offset": ts_offset,
    "m2ts": m2ts,
    "avi_asp_bframes": avi,
    "webm_vp9": webm,
    "vfr_24_30": vfr_24_30,
    "mp4_vfr_jitter": vfr_jitter,
    "open_gop": open_gop,
    "mpeg2_ps": mpeg2_ps,
    "interlaced_tff": interlaced,
    "interlaced_tff_ts": interlaced,
    "tenbit_420": pixel_format("yuv420p10le"),
    "yuv422": pixel_format("yuv422p"),
    "yuv444": pixel_format("yuv444p"),
    "full_range": full_range,
    "hdr10": hdr10,
    "rotation": rotation,
    "cover_art": cover("png", None),
    "mkv_cover_attachment": cover("mjpeg", "cover.jpg"),
    "audio_before_video": audio_offset(-0.115, -0.095),  # Opus pre-skip: first packet 6.5 ms early
    "audio_after_video": audio_offset(0.185, 0.205),
}


def test_every_shape_has_a_feature_check() -> None:
    assert sorted(FEATURES) == sorted(SHAPE_NAMES) and len(SHAPE_NAMES) >= 16


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shape_has_its_defining_feature(shapes: Corpus, name: str) -> None:
    description = shapes.describe(name)
    assert json.loads(json.dumps(description)) == description
    video = description["video"]
    assert video["frame_count"] >= 48 and video["corrupt_frames"] == 0
    assert 1.9 <= video["frame_times"][-1] <= 4 and len(set(video["frame_md5"])) > video["frame_count"] / 2
    assert 160 <= video["width"] <= 320 and 90 <= video["height"] <= 180
    # keyframes every 12-25 frames: 24-frame chunks give several chunks
    assert video["keyframes"] >= 3 and video["frame_count"] / video["keyframes"] <= 25
    FEATURES[name](description)


def test_m2ts_has_192_byte_packets(shapes: Corpus) -> None:
    data = shapes.path("m2ts").read_bytes()[:192 * 4]
    assert [data[4 + 192 * n] for n in range(4)] == [0x47] * 4


def test_hdr10_has_mastering_display_in_the_matroska_header_too(shapes: Corpus) -> None:
    # Colour (0x55B0) > MasteringMetadata (0x55D0) and MaxCLL (0x55BC) in the track header, as
    # well as the SEI messages in the HEVC stream.
    header = shapes.path("hdr10").read_bytes()[:4096]
    assert b"\x55\xb0" in header and b"\x55\xd0" in header and b"\x55\xbc" in header


def test_fonts_are_generated_without_system_fonts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(corpus, "FONT_DIRS", ())
    fonts = corpus.fonts(tmp_path)
    assert [f.name for f in fonts] == ["CorpusFont0.ttf", "CorpusFont1.ttf"]
    assert all(f.read_bytes()[:4] == b"\x00\x01\x00\x00" for f in fonts)
    assert fonts[0].read_bytes() != fonts[1].read_bytes()


def test_shapes_are_deterministic(shapes: Corpus, tmp_path: Path) -> None:
    for name in ("mkv_many_tracks", "hdr10", "mp4_vfr_jitter"):
        again = make(name, tmp_path)
        first = shapes.path(name).read_bytes()
        assert hashlib.md5(again.read_bytes()).digest() == hashlib.md5(first).digest()


# --- (b) a reference remux keeps everything -----------------------------------------------------


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_reference_remux_keeps_everything(shapes: Corpus, name: str, tmp_path: Path) -> None:
    source = shapes.describe(name)
    output = reference_remux(shapes.path(name), tmp_path / f"{name}.mkv")
    result = describe(output, pixel_format=source["video"]["pixel_format"])
    assert result["format"].startswith("matroska")
    assert compare(source, result) == []


def test_reference_remux_adds_options_only_where_needed(shapes: Corpus, tmp_path: Path) -> None:
    def extra(name: str) -> list[str]:
        argv = remux_argv(shapes.path(name), tmp_path / "x.mkv", tmp_path)
        return [a for a in argv if a.startswith("-") and a not in (
            "-nostdin", "-hide_banner", "-v", "-y", "-i", "-map", "-map_metadata", "-map_chapters", "-c",
            "-default_mode", "-f")]  # fmt: skip

    assert "-fflags" in extra("avi_asp_bframes") and "-fflags" not in extra("mp4_bframes")
    assert "-c:3" in extra("mp4_bframes")  # mov_text -> srt
    assert "-attach" in extra("cover_art") and "-attach" not in extra("rotation")
    assert all(a.startswith("-disposition:") for a in extra("rotation"))


# --- (c) doctored outputs are caught ------------------------------------------------------------


Edit = Callable[[list[str]], list[str]]


def add(*options: str) -> Edit:
    """Extra output options, after the reference remux's own (so they win)."""
    return lambda argv: [*argv[:-3], *options, *argv[-3:]]


def before_input(*options: str) -> Edit:
    return lambda argv: [*argv[: argv.index("-i")], *options, *argv[argv.index("-i") :]]


def without_attach(argv: list[str]) -> list[str]:
    """The reference remux without the attachments it adds (a cover picture)."""
    at = argv.index("-attach")
    end = argv.index("-default_mode")
    return [*argv[:at], *argv[end:]]


def audio_later(seconds: str) -> Edit:
    """The audio taken from a second copy of the input, shifted by `seconds`."""

    def edit(argv: list[str]) -> list[str]:
        at = argv.index("-i")
        source = argv[at + 1]
        return [*argv[:at], "-i", source, "-itsoffset", seconds, "-i", source, "-map", "0:v", "-map", "1:a",
                "-c", "copy", *argv[-3:]]  # fmt: skip

    return edit


def doctored(source: Path, output: Path, edit: Edit) -> Path:
    runner.run(edit(remux_argv(source, output, output.parent)), timeout=60)
    return output


DOCTORED: list[tuple[str, Edit, str]] = [
    ("mkv_many_tracks", add("-metadata:s:a:0", "language=und"), "stream 1 (audio, source #1): language"),
    ("mkv_many_tracks", add("-metadata:s:s:1", "title="), "stream 4 (subtitle, source #4): title"),
    ("mkv_many_tracks", add("-disposition:a:0", "default+original"), "stream 1 (audio, source #1): disposit"),
    ("mkv_many_tracks", add("-metadata:c:1", "title=Renamed"), "chapter 1: title"),
    ("mkv_many_tracks", add("-metadata:s:a:1", "COMMENTATOR=Someone"), "tag commentator"),
    ("mkv_many_tracks", add("-metadata", "COMMENT="), "container: tag comment"),
    ("mkv_many_tracks", add("-metadata", "title=Another"), "container: tag title"),
    ("mkv_many_tracks", add("-map", "-0:s:0"), "streams: source has"),
    ("mkv_fonts_ass", add("-map", "-0:t:1"), ".ttf': missing (no attachment with its"),
    ("mkv_fonts_ass", add("-metadata:s:t:0", "mimetype=font/sfnt"), "mimetype"),
    ("cover_art", without_attach, "attached picture (png"),
    ("rotation", before_input("-display_rotation", "0"), "video: rotation"),
    ("interlaced_tff", add("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-vf", "setfield=prog"),
     "video: interlaced_frames"),
    ("open_gop", add("-bsf:v", "noise=drop=eq(n\\,71)"), "video: frame_count"),
    ("audio_after_video", audio_later("0.05"), "stream 1 (audio, source #1): starts"),
    ("mov_timecode", add("-metadata:s:v:0", "timecode="), "timecode: source starts at"),
]


@pytest.mark.parametrize(("name", "edit", "message"), DOCTORED,
                         ids=[f"{name}-{message}" for name, _, message in DOCTORED])  # fmt: skip
def test_doctored_remux_is_caught(
    shapes: Corpus, name: str, edit: Edit, message: str, tmp_path: Path
) -> None:
    source = shapes.describe(name)
    output = doctored(shapes.path(name), tmp_path / f"{name}.mkv", edit)
    problems = compare(source, describe(output, pixel_format=source["video"]["pixel_format"]))
    assert any(message in problem for problem in problems), problems


def test_a_dropped_frame_in_the_middle_is_caught_with_its_number(shapes: Corpus, tmp_path: Path) -> None:
    source = shapes.describe("mkv_many_tracks")
    # frame 47 is the last before the keyframe at 48: nothing else depends on it
    drop = add("-bsf:v", "noise=drop=eq(n\\,47)")
    output = doctored(shapes.path("mkv_many_tracks"), tmp_path / "out.mkv", drop)
    problems = compare(source, describe(output))
    assert "video: frame_count is 71, source has 72" in problems


def test_changed_pixels_are_caught(shapes: Corpus, tmp_path: Path) -> None:
    source = shapes.describe("tenbit_420")
    output = tmp_path / "lossy.mkv"
    corpus.ffmpeg("-i", corpus.f(shapes.path("tenbit_420")), "-c:v", "libx264", "-preset", "ultrafast",
                  "-crf", "30", "-pix_fmt", "yuv420p10le", corpus.f(output))  # fmt: skip
    problems = compare(source, describe(output, pixel_format="yuv420p10le"))
    assert any(p.startswith("video: frame 0 differs (md5;") for p in problems), problems


def test_a_lost_hdr_and_a_lost_pixel_format_are_caught(shapes: Corpus) -> None:
    hdr, plain = shapes.describe("hdr10"), shapes.describe("tenbit_420")
    sdr = {**hdr["video"], "mastering_display": None, "content_light_level": None, "frame_side_data": []}
    problems = compare(hdr, {**hdr, "video": sdr})
    for field in ("mastering_display", "content_light_level", "frame side data"):
        assert any(field in p for p in problems), problems
    eight_bit = {**plain["video"], "pixel_format": "yuv420p"}
    problems = compare(plain, {**plain, "video": eight_bit})
    assert "video: pixel_format is 'yuv420p', source has 'yuv420p10le'" in problems
