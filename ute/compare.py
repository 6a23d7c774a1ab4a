"""Source against output, field by field. Pure: two MediaFacts in, a list of differences out.

The output is the source with its main video re-encoded to HEVC, in Matroska. So everything
else must be equal; what may legitimately differ is listed here, each with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from ute.facts import KEPT_DISPOSITIONS, MediaFacts, StreamFacts

# Matroska keeps timestamps in milliseconds; a frame may land half a tick away in the source's
# clock and again in the output's.
TIME_TOLERANCE_SECONDS = 0.001 + 1e-6
# Streams left out because Matroska has no place for them (a QuickTime timecode track, ...).
DROPPED_KINDS = frozenset({"data", "unknown"})
# Tags that describe the old container or encoder, or that muxers compute, not the content:
# - encoder: names the program that wrote the file or stream (now ffmpeg/x265);
# - major_brand, minor_version, compatible_brands, handler_name, vendor_id: MP4/MOV box fields
#   with no Matroska meaning;
# - creation_time on a stream: MP4's per-track date (mdhd box); Matroska has one date, the
#   file's, which is kept;
# - duration, number_of_frames, number_of_bytes, bps and _statistics_*: statistics that
#   Matroska muxers write (mkvmerge, ffmpeg), stale after any change.
IGNORED_FILE_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands", "duration"})
IGNORED_STREAM_TAGS = frozenset({
    "encoder", "handler_name", "creation_time", "vendor_id", "duration", "number_of_frames",
    "number_of_bytes", "bps",
    "_statistics_writing_app", "_statistics_writing_date_utc", "_statistics_tags",
})  # fmt: skip
# A cover picture from MP4 has neither; Matroska needs both, so they are added.
ATTACHMENT_TAGS = frozenset({"filename", "mimetype"})
# Codecs that Matroska cannot hold become these (the same text, another format).
CONVERTED_CODECS = {"mov_text": "subrip"}
# One codec, two decoder names: FFmpeg decodes SubRip with its "srt" decoder.
CODEC_ALIASES = {"srt": "subrip"}
ENCODED_CODEC = "hevc"
COLOR_RANGE_UNSPECIFIED, COLOR_RANGE_TV = 0, 1


@dataclass(frozen=True)
class Difference:
    where: str  # "file", "video", "audio stream 2", "chapter 3", "frame 120"
    field: str
    source: object
    output: object

    def __str__(self) -> str:
        return f"{self.where}: {self.field} is {self.output!r} in the output, {self.source!r} in the source"


@dataclass(frozen=True)
class Expected:
    """What the output's main video should look like where it differs from the source's."""

    width: int
    height: int


def is_attachment(stream: StreamFacts) -> bool:
    """Attachments and cover pictures: Matroska stores both in its attachments."""
    return stream.kind == "attachment" or "attached_pic" in stream.dispositions


def kept(source: MediaFacts) -> list[StreamFacts]:
    """The source streams an output carries: all but those Matroska has no place for."""
    return [stream for stream in source.streams if stream.kind not in DROPPED_KINDS]


def differences(source: MediaFacts, output: MediaFacts, expected: Expected) -> list[Difference]:
    """Everything in which output is not the source re-encoded."""
    found = list(_tags("file", source.tags, output.tags, IGNORED_FILE_TAGS))
    found += _streams(source, output)
    found += _picture(source, output, expected)
    found += _frames(source, output)
    found += _chapters(source, output)
    return found


def _streams(source: MediaFacts, output: MediaFacts) -> Iterator[Difference]:
    """Tracks pair up in order, main video first; attachments and cover pictures likewise."""
    wanted = kept(source)
    for attachments in (False, True):
        ours = [s for s in wanted if is_attachment(s) == attachments]
        theirs = [s for s in output.streams if is_attachment(s) == attachments]
        if attachments:  # stored apart from the tracks, in an order of the muxer's choosing
            ours.sort(key=lambda s: s.attachment_md5)
            theirs.sort(key=lambda s: s.attachment_md5)
        else:
            ours.sort(key=lambda s: s.index != source.video_index)
            theirs.sort(key=lambda s: s.index != output.video_index)
        label = "attachments" if attachments else "tracks"
        if len(ours) != len(theirs):
            yield Difference("file", f"number of {label}", len(ours), len(theirs))
        for mine, its in zip(ours, theirs, strict=False):
            yield from _stream(_name(mine, source), mine, its, source, output)


def _name(stream: StreamFacts, source: MediaFacts) -> str:
    if stream.index == source.video_index:
        return "video"
    kind = "cover picture" if "attached_pic" in stream.dispositions else stream.kind
    return f"{kind} stream {stream.index}"


def _stream(
    where: str, mine: StreamFacts, its: StreamFacts, source: MediaFacts, output: MediaFacts
) -> Iterator[Difference]:
    main = mine.index == source.video_index
    expected_codec = ENCODED_CODEC if main else CONVERTED_CODECS.get(mine.codec, mine.codec)
    if is_attachment(mine):
        expected_codec = its.codec  # an attachment's "codec" is its container's guess from the name
    if mine.kind != its.kind:
        yield Difference(where, "kind", mine.kind, its.kind)
    if CODEC_ALIASES.get(its.codec, its.codec) != CODEC_ALIASES.get(expected_codec, expected_codec):
        yield Difference(where, "codec", expected_codec, its.codec)
    for field in ("language", "title", "attachment_md5"):
        if getattr(mine, field) != getattr(its, field):
            yield Difference(where, field, getattr(mine, field), getattr(its, field))
    flags = set(KEPT_DISPOSITIONS) | ({"attached_pic"} if is_attachment(mine) else set())
    if mine.dispositions & flags != its.dispositions & flags:
        yield Difference(where, "flags", sorted(mine.dispositions & flags), sorted(its.dispositions & flags))
    ignored = IGNORED_STREAM_TAGS
    if "attached_pic" in mine.dispositions:  # Matroska's attachments need a name and a type
        ignored |= {key for key in ATTACHMENT_TAGS if key not in mine.tags}
    yield from _tags(where, mine.tags, its.tags, ignored)
    if not main and not is_attachment(mine) and mine.kind in ("audio", "subtitle"):
        yield from _offset(where, mine, its, source, output)


def _offset(
    where: str, mine: StreamFacts, its: StreamFacts, source: MediaFacts, output: MediaFacts
) -> Iterator[Difference]:
    """Where the stream starts against the video's first frame (audio before video, or after)."""
    if mine.start_seconds is None or its.start_seconds is None or mine.codec in CONVERTED_CODECS:
        return  # a converted subtitle drops the empty cues its old format needed
    source_offset = mine.start_seconds - source.video_start_seconds
    output_offset = its.start_seconds - output.video_start_seconds
    if abs(source_offset - output_offset) > 2 * TIME_TOLERANCE_SECONDS:
        yield Difference(where, "start against the video (s)", round(source_offset, 4),
                         round(output_offset, 4))  # fmt: skip


def _tags(
    where: str, mine: Mapping[str, str], its: Mapping[str, str], ignored: frozenset[str]
) -> Iterator[Difference]:
    def relevant(tags: Mapping[str, str]) -> dict[str, str]:
        # Matroska statistics tags carry a language suffix: BPS-eng.
        return {key: value for key, value in tags.items() if key.split("-")[0] not in ignored}

    mine, its = relevant(mine), relevant(its)
    for key in sorted(set(mine) | set(its)):
        if mine.get(key) != its.get(key):
            yield Difference(where, f"tag {key}", mine.get(key), its.get(key))


def _picture(source: MediaFacts, output: MediaFacts, expected: Expected) -> Iterator[Difference]:
    mine, its = source.picture, output.picture
    if (its.width, its.height) != (expected.width, expected.height):
        yield Difference("video", "size", f"{expected.width}x{expected.height}", f"{its.width}x{its.height}")
    if _field_order(mine.field_order) != _field_order(its.field_order):
        yield Difference("video", "field order", mine.field_order, its.field_order)
    for field in ("sample_aspect_ratio", "rotation", "color_primaries", "color_transfer",
                  "color_matrix", "mastering_display", "content_light_level"):  # fmt: skip
        if getattr(mine, field) != getattr(its, field):
            yield Difference("video", field.replace("_", " "), _shown(getattr(mine, field)),
                             _shown(getattr(its, field)))  # fmt: skip
    if _pixel_format(mine.pix_fmt) != _pixel_format(its.pix_fmt):
        yield Difference("video", "pixel format", mine.pix_fmt, its.pix_fmt)
    if _color_range(mine.color_range, mine.pix_fmt) != _color_range(its.color_range, its.pix_fmt):
        yield Difference("video", "color range", mine.color_range, its.color_range)


def _shown(value: object) -> object:
    return str(value) if isinstance(value, Fraction) else value


def _field_order(field_order: str) -> str:
    """A source that says nothing of its fields (AVI) is progressive, which the output says."""
    return "progressive" if field_order == "unknown" else field_order


def _pixel_format(pix_fmt: str) -> str:
    """yuvj420p is yuv420p in full range (the range is compared on its own)."""
    return pix_fmt.replace("yuvj", "yuv")


def _color_range(color_range: int, pix_fmt: str) -> int:
    """An unspecified range of YUV video means limited ("tv"), which encoders then write out;
    the yuvj formats mean full range."""
    if pix_fmt.startswith("yuvj"):
        return 2
    return COLOR_RANGE_TV if color_range == COLOR_RANGE_UNSPECIFIED else color_range


def _frames(source: MediaFacts, output: MediaFacts) -> Iterator[Difference]:
    if source.frame_count != output.frame_count:
        yield Difference("video", "frame count", source.frame_count, output.frame_count)
        return
    for position in range(source.frame_count):
        mine, its = source.frame_seconds(position), output.frame_seconds(position)
        if abs(mine - its) > TIME_TOLERANCE_SECONDS:
            yield Difference(f"frame {position}", "time after the first frame (s)", round(mine, 6),
                             round(its, 6))  # fmt: skip
            return  # one is enough: the rest usually follow
    duration_gap = abs(source.duration_seconds - output.duration_seconds)
    if duration_gap > _frame_seconds(source) + 2 * TIME_TOLERANCE_SECONDS:
        yield Difference("file", "duration (s)", round(source.duration_seconds, 3),
                         round(output.duration_seconds, 3))  # fmt: skip


def _frame_seconds(facts: MediaFacts) -> float:
    if facts.frame_count < 2:
        return 0.0
    return facts.frame_seconds(facts.frame_count - 1) / (facts.frame_count - 1)


def _chapters(source: MediaFacts, output: MediaFacts) -> Iterator[Difference]:
    if len(source.chapters) != len(output.chapters):
        yield Difference("file", "number of chapters", len(source.chapters), len(output.chapters))
        return
    for number, (mine, its) in enumerate(zip(source.chapters, output.chapters, strict=True), start=1):
        where = f"chapter {number}"
        if mine.title != its.title:
            yield Difference(where, "title", mine.title, its.title)
        for field in ("start_seconds", "end_seconds"):
            if abs(getattr(mine, field) - getattr(its, field)) > TIME_TOLERANCE_SECONDS:
                yield Difference(where, field.replace("_", " "), getattr(mine, field), getattr(its, field))


def summary(found: Sequence[Difference], limit: int = 5) -> str:
    """One line: the first few differences, and how many more."""
    shown = "; ".join(str(difference) for difference in found[:limit])
    return shown + (f"; and {len(found) - limit} more" if len(found) > limit else "")
