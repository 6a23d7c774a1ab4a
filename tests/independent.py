"""An independent checker: does an output `.mkv` keep everything of its source?

PyAV only: nothing here imports `ute` (not `ute.probe`, not `ute.verify`), so a bug there cannot
hide itself here.

    source = describe(src)
    output = describe(out, pixel_format=source["video"]["pixel_format"])
    assert compare(source, output) == []

`describe(path)` returns a JSON-able dict of what a player and a remuxer would see: container tags,
every stream (type, codec, language, title, tags, dispositions, start, offset against the video),
attachments (with the md5 of their bytes), attached pictures, chapters, and for the main video
every decoded frame (time and md5 of its planes), its geometry, rotation, field order, colour and
HDR side data. `compare(source, output)` lists the differences that matter, each naming the stream
and the field, and allows only what a transcode to HEVC in Matroska may legitimately change (see
the constants below, each with its reason).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import re
import statistics
import struct
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter
import av.logging
import numpy as np

# --- what compare() allows, and why ------------------------------------------------------------
#
# Everything not listed here must be equal. The main video's codec and what the encoder decides
# (profile, level, bitrate, codec tag, GOP structure, picture types) may change: that is the
# transcode; its frames are compared by md5 and time instead.

# Frame times: Matroska's clock is 1 ms (TimestampScale 1000000), so each timestamp may move by up
# to 0.5 ms when a 1/90000 (TS, MP4) or 1/12800 timestamp is written; a time measured against
# another (frame n against frame 0) may then move by up to 1 ms.
FRAME_TIME_TOLERANCE = 0.001 + 1e-6
# An audio/subtitle start against the first video frame (and subtitle cue times): each of the two
# times may move by up to 1 ms (the 1 ms clock; ffmpeg rounds to nearest, other muxers such as
# mkvmerge truncate), so their difference by up to 2 ms.
OFFSET_TOLERANCE = 0.002 + 1e-6
# Chapter marks: Matroska stores nanoseconds, but sources may have 1/1000 or 1/90000 s: 1 ms.
CHAPTER_TOLERANCE = 0.001 + 1e-6

# Tags (container, stream, chapter, attachment) that describe the file or the program that wrote
# it, not the content; each container writes its own and none has a Matroska meaning. Tag names
# are compared without case: Matroska tag names are upper case by convention and ffmpeg's
# Matroska muxer upper-cases the keys it writes ("comment" -> "COMMENT").
IGNORED_TAGS = {
    "major_brand": "MP4/MOV `ftyp` brand: names the ISO file format, meaningless in Matroska",
    "minor_version": "MP4/MOV `ftyp` version of the brand",
    "compatible_brands": "MP4/MOV `ftyp` list of brands the file conforms to",
    "handler_name": "MP4/MOV `hdlr` name of the track handler ('VideoHandler', 'SoundHandler')",
    "vendor_id": "MOV sample-description vendor code ('[0][0][0][0]', 'FFMP', 'appl')",
    "encoder": "the program/library that wrote the file or encoded the stream: now ffmpeg/x265",
    "duration": "the per-track DURATION tag ffmpeg's Matroska muxer writes: recomputed on every mux",
    "number_of_frames": "mkvmerge statistics tag (_STATISTICS_TAGS): recomputed on every mux",
    "number_of_bytes": "mkvmerge statistics tag: the new stream has a new size",
    "bps": "mkvmerge statistics tag: the new stream has a new bitrate",
    "_statistics_writing_app": "mkvmerge statistics tag: which program computed them",
    "_statistics_writing_date_utc": "mkvmerge statistics tag: when",
    "_statistics_tags": "mkvmerge statistics tag: list of the statistics tags",
}
# Per-stream tags only: the container's creation_time becomes Matroska's DateUTC and is compared.
IGNORED_STREAM_TAGS = {
    "creation_time": "MP4/MOV per-track creation date (mdhd): Matroska has no per-track date and "
    "ffmpeg's Matroska muxer drops it",
}
# Compared on their own, not as tags: a stream's language and title (Matroska keeps them in the
# track header, not in Tags), and the timecode (wherever it is: see _compare_timecode).
STREAM_FIELD_TAGS = ("language", "title", "timecode")
# A MOV/MP4 `tmcd` (timecode) track is a data stream Matroska cannot carry: its start timecode
# must survive as a `timecode` tag, on the container or on any stream (ffmpeg's MOV demuxer puts
# it on the video stream too, and a copy keeps it there as TIMECODE).
# Subtitle codecs Matroska cannot hold, and the text codec they become without loss of text or
# timing (the decoded text of every cue is compared).
SUBTITLE_CODEC_EQUIVALENTS = {"mov_text": "subrip"}
# An MP4 attached picture (`covr`, an attached_pic stream) becomes a Matroska attachment (which
# ffmpeg reads back as an attached_pic stream with filename/mimetype tags): compared by the md5 of
# its bytes, wherever it is.
# Languages: unset and "und" are the same; ISO 639-2 has bibliographic (B: Matroska) and
# terminology (T: MP4, ISO 639-2/T) codes for the same languages.
LANGUAGE_SYNONYMS = {
    "deu": "ger", "fra": "fre", "nld": "dut", "zho": "chi", "ces": "cze", "ell": "gre", "fas": "per",
    "ron": "rum", "slk": "slo", "cym": "wel", "sqi": "alb", "hye": "arm", "eus": "baq", "mya": "bur",
    "kat": "geo", "isl": "ice", "mkd": "mac", "mri": "mao", "msa": "may", "bod": "tib",
}  # fmt: skip
# yuvj* pixel formats are ffmpeg's deprecated spelling of full-range yuv* (the H.264 and MJPEG
# decoders still output them, HEVC's never does): the planes are identical, the range is compared
# as part of the colour. An unspecified colour range is limited (tv) range (what H.264/HEVC/MPEG-2
# mean when video_full_range_flag is absent).
# A sample aspect ratio that is unknown (0/1 or None) displays as square pixels, which is what
# Matroska writes for it (DisplayWidth = PixelWidth).
# Absolute start times may shift (ffmpeg starts every output at 0 unless -copyts; a TS that starts
# at 11.4 s becomes a Matroska file that starts at 0): only times relative to the first video frame
# are compared.
# Matroska has no channel layout (only a channel count): PCM comes back as "N channels", which
# means the default layout for N channels (WAVE order).
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# Container duration: within one frame plus the audio that starts before the video (an MP4 edit
# list hides the AAC priming samples that Matroska's Duration counts: 23 ms at 44.1 kHz).
# Subtitle cues with no text: MP4 timed text ends a cue with an empty sample, SRT does not.
# Frame side data that is not content: the encoder's version string (x264/x265 write it as SEI).
IGNORED_FRAME_SIDE_DATA = {"SEI_UNREGISTERED", "VIDEO_ENC_PARAMS", "MOTION_VECTORS"}
# Frame side data that is content (what a player shows or uses): if the source's frames carry it,
# the output's must too. Not in this list, and so allowed to go: MPEG-2's PANSCAN (default
# pan-scan vectors the MPEG-2 decoder always exports, no player uses them), GOP_TIMECODE (the
# GOP headers' running timecode, which has no HEVC equivalent; the start timecode is compared as a
# tag) and AFD (no HEVC carriage in ffmpeg's encoders).
CONTENT_SIDE_DATA = (
    "DISPLAYMATRIX", "MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL", "A53_CC", "STEREO3D",
    "SPHERICAL", "ICC_PROFILE", "S12M_TIMECODE", "DYNAMIC_HDR_PLUS", "DYNAMIC_HDR_VIVID",
    "FILM_GRAIN_PARAMS", "DOVI_RPU_BUFFER", "DOVI_METADATA", "AMBIENT_VIEWING_ENVIRONMENT",
)  # fmt: skip

DISPOSITIONS = tuple(flag.name for flag in av.stream.Disposition if flag.name)


# --- describe -----------------------------------------------------------------------------------


def describe(path: str | Path, *, pixel_format: str | None = None, frames: bool = True) -> dict[str, Any]:
    """Everything of `path` that a remux or transcode must keep, as plain JSON-able data.

    pixel_format: hash the main video's frames in this format (the source's) instead of their own;
    frames=False skips decoding the video (no frame times, md5s, side data).
    """
    with av.open(str(path)) as container:
        result: dict[str, Any] = {
            "format": container.format.name,
            "duration": _seconds(container.duration, Fraction(1, av.time_base)),
            "start_time": _seconds(container.start_time, Fraction(1, av.time_base)),
            "tags": dict(container.metadata),
            "chapters": [_chapter(chapter) for chapter in container.chapters()],
            "streams": [],
            "attachments": [],
            "video": None,
        }
        main = next((s for s in container.streams.video
                     if not s.disposition & av.stream.Disposition.attached_pic), None)  # fmt: skip
        for stream in container.streams:
            if stream.type == "attachment":
                result["attachments"].append(_attachment(stream))
            else:
                result["streams"].append(_stream(stream, main))
        firsts, payloads, events, pictures, frame_info = _read(container, main, pixel_format, frames)
        video_start = frame_info.get("start", firsts.get(main.index) if main is not None else None)
        for entry in result["streams"]:
            index = entry["index"]
            first = firsts.get(index)
            if entry["type"] == "subtitle":
                entry["events"] = [
                    {"start": None if video_start is None else round(start - video_start, 6),
                     "duration": duration, "text": text}
                    for start, duration, text in events[index]
                ]  # fmt: skip
                # A subtitle track starts with its first cue that shows something (MP4 timed text
                # opens with an empty sample at 0).
                first = next((start for start, _, text in events[index] if text.strip()), first)
            entry["first_packet"] = None if first is None else round(first, 6)
            entry["offset"] = (None if first is None or video_start is None or entry["main_video"]
                               else round(first - video_start, 6))  # fmt: skip
            if entry["type"] == "audio":
                entry["packets"], entry["payload_md5"] = payloads[index][0], payloads[index][1].hexdigest()
            if index in pictures:
                entry["picture"] = pictures[index]
        if main is not None:
            result["video"] = {"index": main.index, **_video_stream(main), **(frame_info or {})}
    return result


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return round(float(value * time_base), 6)


def _chapter(chapter: dict[str, Any]) -> dict[str, Any]:
    tags = dict(chapter["metadata"])
    return {"start": _seconds(chapter["start"], chapter["time_base"]),
            "end": _seconds(chapter["end"], chapter["time_base"]),
            "title": tags.pop("title", None), "tags": tags}  # fmt: skip


def _dispositions(stream: av.stream.Stream) -> list[str]:
    return [name for name in DISPOSITIONS if stream.disposition & av.stream.Disposition[name]]


def _stream(stream: av.stream.Stream, main: av.stream.Stream | None) -> dict[str, Any]:
    context = stream.codec_context
    tags = dict(stream.metadata)
    entry: dict[str, Any] = {
        "index": stream.index,
        "type": stream.type,
        "codec": _codec_name(stream),
        "codec_tag": _codec_tag(stream),
        "language": tags.get("language"),
        "title": tags.get("title"),
        "tags": tags,
        "dispositions": _dispositions(stream),
        "start_time": _seconds(stream.start_time, stream.time_base),
        "main_video": main is not None and stream.index == main.index,
    }
    if stream.type == "audio":
        entry.update(sample_rate=context.sample_rate, channels=context.channels,
                     layout=context.layout.name if context.layout else None)  # fmt: skip
    if stream.type == "subtitle":  # the ASS header: styles, fonts, play resolution
        header = bytes(context.extradata or b"") if context is not None else b""
        entry["header_md5"] = hashlib.md5(header).hexdigest() if header else None
    return entry


def _codec_name(stream: av.stream.Stream) -> str | None:
    """The codec's own name (subrip, mp3), not the decoder's (srt, mp3float)."""
    context = stream.codec_context
    if context is None:
        return None
    with contextlib.suppress(Exception):
        return context.codec.canonical_name
    return context.name


def _codec_tag(stream: av.stream.Stream) -> str | None:
    with contextlib.suppress(Exception):
        tag = stream.codec_context.codec_tag
        return tag if tag and tag.isprintable() else None
    return None


def _attachment(stream: av.stream.Stream) -> dict[str, Any]:
    data = stream.data  # type: ignore[attr-defined]
    tags = dict(stream.metadata)
    return {"filename": tags.pop("filename", None), "mimetype": tags.pop("mimetype", None),
            "size": len(data), "md5": hashlib.md5(data).hexdigest(), "tags": tags}  # fmt: skip


def _video_stream(stream: av.video.stream.VideoStream) -> dict[str, Any]:
    context = stream.codec_context
    sar = stream.sample_aspect_ratio
    return {
        "codec": _codec_name(stream),
        "width": context.width,
        "height": context.height,
        "sample_aspect_ratio": None if not sar else f"{sar.numerator}:{sar.denominator}",
        "field_order": FIELD_ORDERS.get(context.field_order, str(context.field_order)),
    }


FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


def _read(
    container: av.container.InputContainer,
    main: av.video.stream.VideoStream | None,
    pixel_format: str | None,
    frames: bool,
) -> tuple[dict[int, float], dict[int, list[Any]], dict[int, list[Any]], dict[int, Any], dict[str, Any]]:
    """One pass over every packet: first timestamps, audio payload hashes, subtitle events,
    attached pictures, and (decoding) the main video's frames."""
    firsts: dict[int, float] = {}
    payloads: dict[int, list[Any]] = {}
    events: dict[int, list[Any]] = {}
    pictures: dict[int, Any] = {}
    video = _VideoFrames(main, pixel_format) if main is not None and frames else None
    if main is not None:
        main.thread_type = "AUTO"
    for packet in container.demux():
        stream = packet.stream
        index = stream.index
        if stream.disposition & av.stream.Disposition.attached_pic:
            if packet.size and index not in pictures:
                data = bytes(packet)
                pictures[index] = {"size": len(data), "md5": hashlib.md5(data).hexdigest()}
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is not None and packet.time_base is not None:
            # the earliest timestamp (video packets come in decoding order)
            seconds = float(stamp * packet.time_base)
            firsts[index] = min(firsts.get(index, seconds), seconds) if stream.type == "video" else (
                firsts.get(index, seconds))
        if video is not None and index == video.stream.index:
            if packet.size:
                video.packets.append((packet.pts, packet.is_keyframe))
            video.decode(packet)
            continue
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # a flush packet from the demuxer
        if stream.type == "audio":
            entry = payloads.setdefault(index, [0, hashlib.md5()])
            entry[0] += 1
            entry[1].update(_audio_payload(stream.codec_context.name, bytes(packet)))
        elif stream.type == "subtitle":
            events.setdefault(index, []).extend(_subtitle_events(stream, packet))
    if video is not None:
        with contextlib.suppress(av.EOFError):  # demux() already sent the flush packet
            video.decode(None)
    for index in [s.index for s in container.streams if s.type == "audio"]:
        payloads.setdefault(index, [0, hashlib.md5()])
    for index in [s.index for s in container.streams if s.type == "subtitle"]:
        events.setdefault(index, [])
    return firsts, payloads, events, pictures, video.summary() if video is not None else {}


def _audio_payload(codec: str, data: bytes) -> bytes:
    """The coded audio without transport framing: ADTS headers (MPEG-TS AAC) are stripped, as
    ffmpeg's aac_adtstoasc does when AAC goes into MP4 or Matroska."""
    if codec == "aac" and len(data) >= 7 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0:
        return data[7 if data[1] & 0x01 else 9 :]
    return data


def _subtitle_events(stream: av.stream.Stream, packet: av.Packet) -> Iterator[tuple[float, float, str]]:
    if packet.pts is None or packet.time_base is None:
        return
    start = float(packet.pts * packet.time_base)
    duration = round(float((packet.duration or 0) * packet.time_base), 6)
    try:
        decoded = stream.decode(packet)  # type: ignore[attr-defined]
    except av.FFmpegError:  # a codec PyAV cannot decode: compare the packet's bytes
        yield start, duration, "md5:" + hashlib.md5(bytes(packet)).hexdigest()
        return
    texts = []  # nothing decoded: an empty cue (how MP4 timed text ends the previous one)
    for rect in decoded:
        if getattr(rect, "type", None) == b"ass":
            # Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text (without ReadOrder, a counter)
            texts.append(rect.ass.decode("utf-8", "replace").split(",", 1)[-1])
        elif getattr(rect, "type", None) == b"text":
            texts.append(rect.text.decode("utf-8", "replace"))
        else:  # a bitmap subtitle: its pixels
            texts.append("bitmap:" + hashlib.md5(b"".join(bytes(p) for p in rect.planes)).hexdigest())
    yield start, duration, "\n".join(texts)


class _VideoFrames:
    """Decodes the main video and keeps what describe() reports about its frames."""

    def __init__(self, stream: av.video.stream.VideoStream, pixel_format: str | None) -> None:
        self.stream = stream
        self.pixel_format = pixel_format
        self.times: list[float | None] = []
        self.durations: list[float] = []
        self.md5: list[str] = []
        self.formats: set[str] = set()
        self.sizes: set[tuple[int, int]] = set()
        self.colours: list[dict[str, str]] = []
        self.interlaced = 0
        self.rotations: set[int] = set()
        self.matrices: list[list[int]] = []
        self.mastering: list[dict[str, Any]] = []
        self.light: list[dict[str, int]] = []
        self.side_data: set[str] = set()
        self.corrupt = 0
        self.interlaced_frames: list[av.VideoFrame] = []
        self.picture_types: dict[str, int] = {}
        self.packets: list[tuple[int | None, bool]] = []  # (pts, keyframe) in decoding order

    def decode(self, packet: av.Packet | None) -> None:
        for frame in self.stream.decode(packet):
            self._frame(frame)

    def _frame(self, frame: av.VideoFrame) -> None:
        self.times.append(frame.time)
        self.durations.append(float(frame.duration * frame.time_base) if frame.time_base else 0.0)
        self.formats.add(frame.format.name)
        self.sizes.add((frame.width, frame.height))
        self.corrupt += frame.is_corrupt
        kind = PICTURE_TYPES.get(int(frame.pict_type), str(frame.pict_type))
        self.picture_types[kind] = self.picture_types.get(kind, 0) + 1
        colour = _colour(frame)
        if colour not in self.colours:
            self.colours.append(colour)
        if frame.interlaced_frame:
            self.interlaced += 1
            if len(self.interlaced_frames) < 8:
                self.interlaced_frames.append(frame)
        for side in frame.side_data:
            name = side.type.name
            if name in IGNORED_FRAME_SIDE_DATA:
                continue
            self.side_data.add(name)
            if name == "DISPLAYMATRIX":
                matrix = list(struct.unpack("<9i", bytes(side)[:36]))
                if matrix not in self.matrices:
                    self.matrices.append(matrix)
                self.rotations.add(frame.rotation)
            elif name == "MASTERING_DISPLAY_METADATA":
                value = _mastering(bytes(side))
                if value not in self.mastering:
                    self.mastering.append(value)
            elif name == "CONTENT_LIGHT_LEVEL":
                max_cll, max_fall = struct.unpack("<2I", bytes(side)[:8])
                value = {"max_cll": max_cll, "max_fall": max_fall}
                if value not in self.light:
                    self.light.append(value)
        target = self.pixel_format
        if target and _normal_format(target) != _normal_format(frame.format.name):
            frame = frame.reformat(format=target)
        self.md5.append(_planes_md5(frame))

    def summary(self) -> dict[str, Any]:
        times = self.times
        known = [t for t in times if t is not None]
        start = min(known) if known else None
        relative = [None if t is None or start is None else round(t - start, 6) for t in times]
        end = max(((t + d) for t, d in zip(times, self.durations, strict=True) if t is not None),
                  default=None)  # fmt: skip
        return {
            "start": start,
            "frame_count": len(times),
            "frame_times": relative,
            "frame_md5": self.md5,
            "video_duration": None if start is None or end is None else round(end - start, 6),
            "pixel_format": _normal_format(sorted(self.formats)[0]) if self.formats else None,
            "decoded_pixel_formats": sorted(self.formats),
            "decoded_sizes": [list(size) for size in sorted(self.sizes)],
            "corrupt_frames": self.corrupt,
            "colour": self.colours[0] if self.colours else None,
            "colour_changes": len(self.colours) - 1 if self.colours else 0,
            "interlaced_frames": self.interlaced,
            "field_dominance": _field_dominance(self.stream, self.interlaced_frames),
            "rotation": (sorted(self.rotations)[0] if len(self.rotations) == 1 else sorted(self.rotations))
            if self.rotations else 0,
            "display_matrix": self.matrices[0] if len(self.matrices) == 1 else (self.matrices or None),
            "mirrored": any(m[0] * m[4] - m[1] * m[3] < 0 for m in self.matrices),
            "mastering_display": self.mastering[0] if len(self.mastering) == 1 else (self.mastering or None),
            "content_light_level": self.light[0] if len(self.light) == 1 else (self.light or None),
            "frame_side_data": sorted(self.side_data),
            "picture_types": dict(sorted(self.picture_types.items())),
            **_gop_structure(self.packets),
        }


PICTURE_TYPES = {0: "?", 1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}


def _gop_structure(packets: list[tuple[int | None, bool]]) -> dict[str, Any]:
    """From the packets' order: are frames reordered (B-frames), and how many keyframes after the
    first open a GOP whose leading pictures come before them in time (open GOP)? None where the
    container has no presentation times (AVI)."""
    if not packets or any(pts is None for pts, _ in packets):
        return {"reordered": None, "open_gop_keyframes": None, "keyframes": sum(k for _, k in packets)}
    stamps = [int(pts) for pts, _ in packets]  # type: ignore[arg-type]
    reordered = any(stamps[i] < max(stamps[:i]) for i in range(1, len(stamps)))
    keys = [i for i, (_, key) in enumerate(packets) if key]
    open_keys = 0
    for number, i in enumerate(keys[1:], 1):
        end = keys[number + 1] if number + 1 < len(keys) else len(stamps)
        open_keys += any(stamps[j] < stamps[i] for j in range(i + 1, end))
    return {"reordered": reordered, "open_gop_keyframes": open_keys, "keyframes": len(keys)}


def _normal_format(name: str) -> str:
    return "yuv" + name[4:] if name.startswith("yuvj") else name


# ffmpeg's names (av_color_*_name), as ffprobe prints them.
PRIMARIES = {0: "reserved", 1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m",
             7: "smpte240m", 8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432",
             22: "ebu3213"}  # fmt: skip
TRANSFERS = {0: "reserved", 1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m",
             7: "smpte240m", 8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e",
             13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428",
             18: "arib-std-b67"}  # fmt: skip
MATRICES = {0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
            13: "chroma-derived-c", 14: "ictcp"}  # fmt: skip
RANGES = {0: "unknown", 1: "tv", 2: "pc"}


def _colour(frame: av.VideoFrame) -> dict[str, str]:
    colour_range = RANGES.get(frame.color_range, str(frame.color_range))
    if frame.format.name.startswith("yuvj") and colour_range == "unknown":
        colour_range = "pc"  # yuvj* means full range whatever the frame says
    return {
        "primaries": PRIMARIES.get(frame.color_primaries, str(frame.color_primaries)),
        "transfer": TRANSFERS.get(frame.color_trc, str(frame.color_trc)),
        "matrix": MATRICES.get(frame.colorspace, str(frame.colorspace)),
        "range": colour_range,
    }


def _mastering(data: bytes) -> dict[str, Any]:
    """AVMasteringDisplayMetadata: 3x2 primaries, 2 white point, min, max luminance (rationals),
    has_primaries, has_luminance."""
    values = struct.unpack("<20i2i", data[:88])
    rationals = [values[i] / values[i + 1] if values[i + 1] else 0.0 for i in range(0, 20, 2)]
    result: dict[str, Any] = {}
    if values[20]:
        result["primaries"] = [round(v, 5) for v in rationals[0:6]]  # R xy, G xy, B xy
        result["white_point"] = [round(v, 5) for v in rationals[6:8]]
    if values[21]:
        result["min_luminance"] = round(rationals[8], 5)
        result["max_luminance"] = round(rationals[9], 5)
    return result


def _planes_md5(frame: av.VideoFrame) -> str:
    """md5 of the visible bytes of every plane (no line padding), in the frame's pixel format."""
    digest = hashlib.md5()
    fmt = frame.format
    for number, plane in enumerate(frame.planes):
        components = [c for c in fmt.components if c.plane == number]
        step = max(1, sum((c.bits + 7) // 8 for c in components)) if fmt.is_planar or number else 0
        if not step:  # a packed format: the whole row is one plane
            step = max(1, (fmt.bits_per_pixel + 7) // 8)
        row = plane.width * step
        data = np.frombuffer(plane, np.uint8)
        rows = data[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)
        digest.update(np.ascontiguousarray(rows[:, :row]).tobytes())
    return digest.hexdigest()


_SHOWINFO_FIELD = re.compile(r"\bi:([TBP])\b")


def _field_dominance(stream: av.video.stream.VideoStream, frames: list[av.VideoFrame]) -> str | None:
    """'tff' or 'bff' from the first interlaced frames' flags (PyAV does not expose the top-field-
    first flag, ffmpeg's showinfo filter prints it), None for progressive video."""
    if not frames:
        return None
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frames[0].width, height=frames[0].height, format=frames[0].format,
                              time_base=frames[0].time_base or Fraction(1, 1000))  # fmt: skip
    info = graph.add("showinfo")
    sink = graph.add("buffersink")
    source.link_to(info)
    info.link_to(sink)
    graph.configure()
    level = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture() as logs:
            for frame in frames:
                graph.push(frame)
                with contextlib.suppress(av.BlockingIOError, av.EOFError):
                    graph.pull()
    finally:
        av.logging.set_level(level)
    marks = {m.group(1) for _, name, line in logs if name == "showinfo"
             for m in _SHOWINFO_FIELD.finditer(line)}  # fmt: skip
    return {"T": "tff", "B": "bff"}.get(next(iter(marks))) if len(marks) == 1 else "/".join(sorted(marks))


# --- compare ------------------------------------------------------------------------------------


def compare(source: dict[str, Any], output: dict[str, Any]) -> list[str]:
    """The differences between a source's and an output's description that matter ([] = kept)."""
    problems: list[str] = []
    problems += _compare_tags("container", source["tags"], output["tags"], ("timecode",))
    problems += _compare_timecode(source, output)
    problems += _compare_chapters(source["chapters"], output["chapters"])
    problems += _compare_pictures(source, output)
    problems += _compare_attachments(source["attachments"], output["attachments"])
    kept_source = [s for s in source["streams"] if _is_media(s)]
    kept_output = [s for s in output["streams"] if _is_media(s)]
    source_kinds = [s["type"] for s in kept_source]
    output_kinds = [s["type"] for s in kept_output]
    if source_kinds != output_kinds:
        problems.append(f"streams: source has {source_kinds}, output has {output_kinds}")
    for number, old, new in _pair_streams(kept_source, kept_output):
        where = f"stream {number} ({(old or new)['type']}, source #{old['index'] if old else None})"
        if new is None:
            problems.append(f"{where}: missing ({_label(old)})")
        elif old is None:
            problems.append(f"{where}: not in the source ({_label(new)})")
        else:
            problems += _compare_stream(where, old, new)
    problems += _compare_video(source["video"], output["video"])
    problems += _compare_duration(source, output)
    return problems


def _label(stream: dict[str, Any] | None) -> str:
    stream = stream or {}
    return f"{stream.get('codec')}, language {stream.get('language')!r}, title {stream.get('title')!r}"


def _pair_streams(
    old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> Iterator[tuple[int, dict[str, Any] | None, dict[str, Any] | None]]:
    """Source and output streams in order, paired; where the lists differ (a stream lost or added)
    the pairs follow the longest runs of streams that agree in type, language and title, so one
    lost stream is reported as that stream and not as a shift of all that follow."""
    def key(stream: dict[str, Any]) -> tuple[str, str, str | None]:
        return stream["type"], _language(stream["language"]), stream["title"] or None

    if [s["type"] for s in old] == [s["type"] for s in new]:
        yield from ((n, a, b) for n, (a, b) in enumerate(zip(old, new, strict=True)))
        return
    matcher = difflib.SequenceMatcher(a=[key(s) for s in old], b=[key(s) for s in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace") and i2 - i1 == j2 - j1:
            for offset in range(i2 - i1):
                a, b = old[i1 + offset], new[j1 + offset]
                if a["type"] == b["type"]:
                    yield i1 + offset, a, b
                else:
                    yield i1 + offset, a, None
                    yield i1 + offset, None, b
            continue
        for i in range(i1, i2):
            yield i, old[i], None
        for j in range(j1, j2):
            yield j, None, new[j]


def _compare_duration(source: dict[str, Any], output: dict[str, Any]) -> list[str]:
    """Container durations, within one frame plus the audio that starts before the video: an MP4
    edit list hides the AAC priming samples that Matroska's duration counts (23 ms at 44.1 kHz)."""
    old, new = source["duration"], output["duration"]
    if old is None or new is None:
        return []
    times = (source["video"] or {}).get("frame_times") or []
    frame = statistics.median(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else 0.0
    lead = max([0.0] + [-s["offset"] for s in source["streams"] if s["offset"] is not None])
    if abs(old - new) > frame + lead + OFFSET_TOLERANCE:
        return [f"duration is {new} s, source has {old} s"]
    return []


def _is_media(stream: dict[str, Any]) -> bool:
    return stream["type"] in ("video", "audio", "subtitle") and "attached_pic" not in stream["dispositions"]


def _key(name: str) -> str:
    return name.lower()


def _comparable_tags(tags: dict[str, str], ignored: Iterable[str] = ()) -> dict[str, str]:
    skip = {*IGNORED_TAGS, *ignored}
    return {_key(k): v for k, v in tags.items() if _key(k) not in skip}


def _compare_tags(
    where: str, old: dict[str, str], new: dict[str, str], ignored: Iterable[str] = ()
) -> list[str]:
    old_tags, new_tags = _comparable_tags(old, ignored), _comparable_tags(new, ignored)
    problems = []
    for key in sorted(old_tags):
        if key not in new_tags:
            problems.append(f"{where}: tag {key}={old_tags[key]!r} is missing")
        elif new_tags[key] != old_tags[key]:
            problems.append(f"{where}: tag {key} is {new_tags[key]!r}, source has {old_tags[key]!r}")
    for key in sorted(set(new_tags) - set(old_tags)):
        problems.append(f"{where}: tag {key}={new_tags[key]!r} is not in the source")
    return problems


def _timecodes(description: dict[str, Any]) -> set[str]:
    found = {v for k, v in description["tags"].items() if _key(k) == "timecode"}
    for stream in description["streams"]:
        found |= {v for k, v in stream["tags"].items() if _key(k) == "timecode"}
    return found


def _compare_timecode(source: dict[str, Any], output: dict[str, Any]) -> list[str]:
    old, new = _timecodes(source), _timecodes(output)
    if old and not old & new:
        return [f"timecode: source starts at {sorted(old)}, output has {sorted(new) or 'no timecode'}"]
    if new - old:
        return [f"timecode: output has {sorted(new - old)}, not in the source"]
    return []


def _language(value: str | None) -> str:
    value = (value or "und").lower()
    return LANGUAGE_SYNONYMS.get(value, value)


def _compare_stream(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    if not old["main_video"]:
        old_codec = SUBTITLE_CODEC_EQUIVALENTS.get(old["codec"], old["codec"])
        if old_codec != new["codec"]:
            problems.append(f"{where}: codec is {new['codec']}, source has {old['codec']}")
    if _language(old["language"]) != _language(new["language"]):
        problems.append(f"{where}: language is {new['language']!r}, source has {old['language']!r}")
    if (old["title"] or None) != (new["title"] or None):
        problems.append(f"{where}: title is {new['title']!r}, source has {old['title']!r}")
    if old["dispositions"] != new["dispositions"]:
        problems.append(f"{where}: dispositions are {new['dispositions']}, source has {old['dispositions']}")
    problems += _compare_tags(where, old["tags"], new["tags"], (*IGNORED_STREAM_TAGS, *STREAM_FIELD_TAGS))
    a, b = old["offset"], new["offset"]
    if (a is None) != (b is None) or (a is not None and b is not None and abs(a - b) > OFFSET_TOLERANCE):
        problems.append(f"{where}: starts {new['offset']} s against the video, source {old['offset']} s")
    if old["type"] == "audio":
        for field in ("sample_rate", "channels", "payload_md5"):
            if old[field] != new[field]:
                problems.append(f"{where}: {field} is {new[field]!r}, source has {old[field]!r}")
        if old["layout"] != new["layout"] and not _default_layout(old, new):
            problems.append(f"{where}: layout is {new['layout']!r}, source has {old['layout']!r}")
    if old["type"] == "subtitle":
        if old["codec"] == new["codec"] and old["header_md5"] != new["header_md5"]:
            problems.append(f"{where}: the codec header (ASS styles) differs")
        problems += _compare_events(where, old["events"], new["events"])
    return problems


def _default_layout(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Matroska has a channel count but no channel layout: codecs that carry no layout of their
    own (PCM) come back as 'N channels', which players take as the default order for N."""
    unspecified = new["layout"] == f"{new['channels']} channels"
    return unspecified and DEFAULT_LAYOUTS.get(old["channels"]) == old["layout"]


def _compare_events(where: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    old = [e for e in old if e["text"].strip()]  # an empty cue is how MP4 ends the previous one
    new = [e for e in new if e["text"].strip()]
    if len(old) != len(new):
        return [f"{where}: {len(new)} subtitle events, source has {len(old)}"]
    for number, (a, b) in enumerate(zip(old, new, strict=True)):
        if a["text"] != b["text"]:
            return [f"{where}: subtitle event {number} text is {b['text']!r}, source has {a['text']!r}"]
        if None not in (a["start"], b["start"]) and abs(a["start"] - b["start"]) > OFFSET_TOLERANCE:
            return [f"{where}: subtitle event {number} starts at {b['start']} s, source {a['start']} s"]
        if a["duration"] and abs(a["duration"] - b["duration"]) > OFFSET_TOLERANCE:
            return [f"{where}: subtitle event {number} lasts {b['duration']} s, source {a['duration']} s"]
    return []


def _compare_chapters(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    if len(old) != len(new):
        return [f"chapters: output has {len(new)}, source has {len(old)}"]
    problems = []
    for number, (a, b) in enumerate(zip(old, new, strict=True)):
        where = f"chapter {number}"
        if a["title"] != b["title"]:
            problems.append(f"{where}: title is {b['title']!r}, source has {a['title']!r}")
        for field in ("start", "end"):
            if a[field] is not None and (b[field] is None or abs(a[field] - b[field]) > CHAPTER_TOLERANCE):
                problems.append(f"{where}: {field} is {b[field]} s, source has {a[field]} s")
        problems += _compare_tags(where, a["tags"], b["tags"])
    return problems


def _pictures(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Attached pictures by md5, whether an attached_pic stream (MP4 covr, or how ffmpeg reads
    an image attachment of a Matroska file) or an image attachment."""
    found = {}
    for stream in description["streams"]:
        if "attached_pic" in stream["dispositions"] and "picture" in stream:
            found[stream["picture"]["md5"]] = {"codec": stream["codec"], "size": stream["picture"]["size"]}
    return found


def _compare_pictures(source: dict[str, Any], output: dict[str, Any]) -> list[str]:
    old = _pictures(source)
    new = _pictures(output) | {a["md5"]: {"mimetype": a["mimetype"]} for a in output["attachments"]}
    return [f"attached picture ({info['codec']}, {info['size']} bytes, md5 {md5}) is missing"
            for md5, info in old.items() if md5 not in new]  # fmt: skip


def _compare_attachments(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    problems = []
    by_md5 = {a["md5"]: a for a in new}
    for attachment in old:
        where = f"attachment {attachment['filename']!r}"
        found = by_md5.get(attachment["md5"])
        if found is None:
            problems.append(f"{where}: missing (no attachment with its {attachment['size']} bytes)")
            continue
        for field in ("filename", "mimetype"):
            if found[field] != attachment[field]:
                problems.append(f"{where}: {field} is {found[field]!r}, source has {attachment[field]!r}")
        problems += _compare_tags(where, attachment["tags"], found["tags"])
    old_md5 = {a["md5"] for a in old}
    problems += [f"attachment {a['filename']!r}: not in the source" for a in new if a["md5"] not in old_md5]
    return problems


def _interlacing_in_container(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Interlaced frames coded as frames: HEVC has no per-frame interlaced flag outside field
    coding (x265 `interlace=`, which UTE does not choose; x265's default codes frames), so the
    decoded frames lose it. What tells a player how to deinterlace is then Matroska's
    FieldOrder, which must say what the source said (compared as field_order)."""
    interlaced = old.get("interlaced_frames") and old["field_order"] not in ("unknown", "progressive")
    return bool(interlaced) and new["field_order"] == old["field_order"] and not new.get("interlaced_frames")


def _compare_video(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    if old is None or new is None:
        return [] if old is new else [f"video: source has {old and 'one'}, output has {new and 'one'}"]
    problems = []

    def differ(field: str, a: Any, b: Any) -> None:
        if a != b:
            problems.append(f"video: {field} is {b!r}, source has {a!r}")

    for field in ("width", "height", "pixel_format", "rotation", "mirrored", "mastering_display",
                  "content_light_level", "frame_count"):
        differ(field, old.get(field), new.get(field))  # fmt: skip
    if not _interlacing_in_container(old, new):
        differ("interlaced_frames", old.get("interlaced_frames"), new.get("interlaced_frames"))
        differ("field_dominance", old.get("field_dominance"), new.get("field_dominance"))
    differ("sample_aspect_ratio", _sar(old["sample_aspect_ratio"]), _sar(new["sample_aspect_ratio"]))
    differ("decoded_sizes", old.get("decoded_sizes"), new.get("decoded_sizes"))
    differ("colour", _colour_meaning(old.get("colour")), _colour_meaning(new.get("colour")))
    lost = [kind for kind in CONTENT_SIDE_DATA
            if kind in old.get("frame_side_data", []) and kind not in new.get("frame_side_data", [])]
    if lost:
        problems.append(f"video: frame side data {lost} is missing")
    if new.get("corrupt_frames", 0) > old.get("corrupt_frames", 0):
        problems.append(f"video: {new['corrupt_frames']} frames decode with errors, source has "
                        f"{old.get('corrupt_frames', 0)}")
    if {old["field_order"], new["field_order"]} - {"unknown", "progressive"}:
        differ("field_order", old["field_order"], new["field_order"])
    if old.get("frame_count") == new.get("frame_count"):
        for number, (a, b) in enumerate(zip(old["frame_times"], new["frame_times"], strict=True)):
            if a is None or b is None or abs(a - b) > FRAME_TIME_TOLERANCE:
                problems.append(f"video: frame {number} is at {b} s, source has it at {a} s")
                break
        if old["pixel_format"] == new["pixel_format"]:
            for number, (a, b) in enumerate(zip(old["frame_md5"], new["frame_md5"], strict=True)):
                if a != b:
                    different = sum(x != y for x, y in zip(old["frame_md5"], new["frame_md5"], strict=True))
                    problems.append(f"video: frame {number} differs (md5; {different} frames differ)")
                    break
    return problems


def _colour_meaning(colour: dict[str, str] | None) -> dict[str, str] | None:
    """An unspecified range is limited (tv) range: that is what H.264/HEVC/MPEG-2 mean when
    video_full_range_flag is absent, and how every player shows it."""
    if colour is None:
        return None
    return {**colour, "range": "tv" if colour["range"] == "unknown" else colour["range"]}


def _sar(value: str | None) -> str:
    return "1:1" if value in (None, "0:1", "0:0") else value
