"""The verifier's comparison, pure: every field a doctored output changes is named."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ute.compare import Expected, differences, summary
from ute.facts import Chapter, MediaFacts, PictureFacts, StreamFacts
from ute.verify import PictureScore, picture_differences

PICTURE = PictureFacts(
    width=320, height=180, sample_aspect_ratio=Fraction(1), rotation=90.0, field_order="tt",
    pix_fmt="yuv420p10le", color_primaries=9, color_transfer=16, color_matrix=9, color_range=1,
    mastering_display="d0840000", content_light_level="e8030000",
)  # fmt: skip
DEFAULT = frozenset({"default"})
VIDEO = StreamFacts(0, "video", "h264", "und", "", DEFAULT, {"encoder": "x264", "custom": "v"}, 0.0)
AUDIO = StreamFacts(1, "audio", "aac", "eng", "English Stereo", DEFAULT, {"comment": "a"}, -0.1)
SUBTITLE = StreamFacts(2, "subtitle", "subrip", "deu", "Deutsch", frozenset({"forced"}), {}, 0.5)
FONT_TYPE = "application/x-truetype-font"
FONT = StreamFacts(3, "attachment", "ttf", "und", "", frozenset(),
                   {"filename": "font.ttf", "mimetype": FONT_TYPE}, None, "f0f0")  # fmt: skip
TIMECODE = StreamFacts(4, "data", "", "eng", "", frozenset(), {"timecode": "01:00:00:00"}, 0.0)
SOURCE = MediaFacts(
    container="matroska,webm",
    tags={"title": "A film", "comment": "kept", "encoder": "old muxer"},
    streams=(VIDEO, AUDIO, SUBTITLE, FONT, TIMECODE),
    chapters=(Chapter(0.0, 2.0, "One"), Chapter(2.0, 4.0, "Two")),
    video_index=0,
    picture=PICTURE,
    frame_pts=tuple(range(0, 4000, 40)),
    time_base=Fraction(1, 1000),
    duration_seconds=4.0,
)
OUTPUT = dataclasses.replace(
    SOURCE,
    tags={"title": "A film", "comment": "kept", "encoder": "Lavf62"},
    streams=(dataclasses.replace(VIDEO, codec="hevc", tags={"encoder": "Lavc libx265", "custom": "v",
                                                            "duration": "00:00:04.0"}),
             AUDIO, SUBTITLE, FONT),
)  # fmt: skip
EXPECTED = Expected(320, 180)
LATE_FROM_50 = (*OUTPUT.frame_pts[:50], *(pts + 2 for pts in OUTPUT.frame_pts[50:]))


def stream(facts: MediaFacts, index: int, **changes: object) -> MediaFacts:
    streams = list(facts.streams)
    streams[index] = dataclasses.replace(streams[index], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(facts, streams=tuple(streams))


def picture(**changes: object) -> MediaFacts:
    return dataclasses.replace(OUTPUT, picture=dataclasses.replace(PICTURE, **changes))  # type: ignore[arg-type]


def test_an_output_that_kept_everything_passes() -> None:
    assert differences(SOURCE, OUTPUT, EXPECTED) == []


@pytest.mark.parametrize(
    ("doctored", "named"),
    [
        (stream(OUTPUT, 1, language="und"), "audio stream 1: language"),
        (stream(OUTPUT, 1, title=""), "audio stream 1: title"),
        (stream(OUTPUT, 1, dispositions=frozenset()), "audio stream 1: flags"),
        (stream(OUTPUT, 2, dispositions=frozenset({"forced", "default"})), "subtitle stream 2: flags"),
        (stream(OUTPUT, 1, tags={}), "audio stream 1: tag comment"),
        (stream(OUTPUT, 0, tags={"custom": "changed"}), "video: tag custom"),
        (stream(OUTPUT, 0, dispositions=frozenset()), "video: flags"),
        (stream(OUTPUT, 0, codec="h264"), "video: codec"),
        (stream(OUTPUT, 1, codec="mp3"), "audio stream 1: codec"),
        (stream(OUTPUT, 1, start_seconds=0.0), "audio stream 1: start against the video"),
        (stream(OUTPUT, 3, tags={"mimetype": FONT_TYPE}), "attachment stream 3: tag filename"),
        (stream(OUTPUT, 3, attachment_md5="0000"), "attachment stream 3: attachment_md5"),
        (dataclasses.replace(OUTPUT, streams=OUTPUT.streams[:3]), "number of attachments"),
        (dataclasses.replace(OUTPUT, streams=OUTPUT.streams[:2] + OUTPUT.streams[3:]), "number of tracks"),
        (dataclasses.replace(OUTPUT, tags={"title": "A film"}), "file: tag comment"),
        (dataclasses.replace(OUTPUT, chapters=SOURCE.chapters[:1]), "number of chapters"),
        (dataclasses.replace(OUTPUT, chapters=(Chapter(0.0, 2.0, "One"), Chapter(2.0, 4.0, "2"))),
         "chapter 2: title"),
        (dataclasses.replace(OUTPUT, chapters=(Chapter(0.0, 2.0, "One"), Chapter(2.01, 4.0, "Two"))),
         "chapter 2: start seconds"),
        (picture(width=318), "video: size"),
        (picture(sample_aspect_ratio=Fraction(4, 3)), "video: sample aspect ratio"),
        (picture(rotation=0.0), "video: rotation"),
        (picture(field_order="tb"), "video: field order"),
        (picture(pix_fmt="yuv420p"), "video: pixel format"),
        (picture(color_primaries=1), "video: color primaries"),
        (picture(color_transfer=1), "video: color transfer"),
        (picture(color_matrix=1), "video: color matrix"),
        (picture(color_range=2), "video: color range"),
        (picture(mastering_display=""), "video: mastering display"),
        (picture(content_light_level=""), "video: content light level"),
        (dataclasses.replace(OUTPUT, frame_pts=OUTPUT.frame_pts[:-1]), "video: frame count"),
        (dataclasses.replace(OUTPUT, frame_pts=LATE_FROM_50),
         "frame 50: time after the first frame"),
        (dataclasses.replace(OUTPUT, duration_seconds=4.2), "file: duration"),
    ],
)
def test_a_doctored_output_is_rejected_naming_the_field(doctored: MediaFacts, named: str) -> None:
    found = differences(SOURCE, doctored, EXPECTED)
    assert found, f"{named} went unnoticed"
    assert named in summary(found), summary(found)


def test_what_may_differ_does_not_count() -> None:
    """Muxer statistics, old encoder names, MP4 box tags; mov_text becoming SRT; an unset range."""
    source = stream(SOURCE, 2, codec="mov_text", start_seconds=0.0, tags={"handler_name": "SubtitleHandler"})
    source = dataclasses.replace(source, picture=dataclasses.replace(PICTURE, color_range=0),
                                 tags={**SOURCE.tags, "major_brand": "isom"})  # fmt: skip
    output = stream(OUTPUT, 2, tags={"bps-eng": "1000", "duration": "00:00:04"})
    assert differences(source, output, EXPECTED) == []


def test_a_cover_picture_may_gain_the_name_and_type_matroska_needs() -> None:
    cover = StreamFacts(5, "video", "png", "und", "", frozenset({"attached_pic"}), {}, 0.0, "c0c0")
    source = dataclasses.replace(SOURCE, streams=(*SOURCE.streams, cover))
    stored = dataclasses.replace(cover, index=4, tags={"filename": "cover-5.png", "mimetype": "image/png"})
    output = dataclasses.replace(OUTPUT, streams=(*OUTPUT.streams, stored))
    assert differences(source, output, EXPECTED) == []
    renamed = dataclasses.replace(stored, attachment_md5="other")
    assert "attachment_md5" in summary(differences(source, dataclasses.replace(
        OUTPUT, streams=(*OUTPUT.streams, renamed)), EXPECTED))  # fmt: skip


def test_a_crop_is_expected_in_the_size() -> None:
    assert differences(SOURCE, picture(width=300, height=160), Expected(300, 160)) == []


@given(st.lists(st.integers(1, 3), min_size=2, max_size=60), st.integers(0, 58), st.sampled_from([1, -1]))
def test_any_frame_moved_by_more_than_a_millisecond_is_found(
    steps: list[int], moved: int, direction: int
) -> None:
    """Timestamps at a variable rate (1-3 ms steps at 1/1000 would be odd, so scaled by 10)."""
    pts = [0]
    for step in steps:
        pts.append(pts[-1] + 10 * step)
    moved = 1 + moved % (len(pts) - 1)
    source = dataclasses.replace(SOURCE, frame_pts=tuple(pts))
    shifted = list(pts)
    shifted[moved] += direction * 2
    output = dataclasses.replace(OUTPUT, frame_pts=tuple(shifted))
    assert differences(source, dataclasses.replace(OUTPUT, frame_pts=tuple(pts)), EXPECTED) == []
    assert any(d.field.startswith("time after") for d in differences(source, output, EXPECTED))


def test_pictures_of_garbage_or_from_the_wrong_place_are_found() -> None:
    good = PictureScore(position=0, chunk=0, own_db=41.0, best_other_db=22.0, best_other_position=24)
    garbage = PictureScore(position=24, chunk=1, own_db=12.0, best_other_db=11.0, best_other_position=0)
    swapped = PictureScore(position=48, chunk=2, own_db=24.0, best_other_db=40.0, best_other_position=72)
    found = picture_differences([good, garbage, swapped])
    assert [d.where for d in found] == ["frame 24 (chunk 1)", "frame 48 (chunk 2)"]
    assert "frame 72" in str(found[1])
