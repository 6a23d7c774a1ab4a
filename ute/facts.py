"""What the verifier compares between a source and its output, read with PyAV.

`read_facts` collects, for a whole file, everything a user would notice if it changed: streams
with their languages, titles, flags and tags, attachments, chapters, global tags, every video
frame's timestamp, and how the picture is to be shown (size, aspect, rotation, field order,
colour, HDR side data). `pictures_at` and `decode_all` decode chosen frames as grey pictures
for comparing content. Reading only: no decision is made here (see verify.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import partial
from typing import Any

import av
import av.error

from ute.errors import ProbeError

# Flags Matroska has a place for (FlagDefault, FlagForced, ...): these must survive.
KEPT_DISPOSITIONS = ("default", "forced", "hearing_impaired", "visual_impaired", "original",
                     "comment", "descriptions")  # fmt: skip
# How far before a keyframe to seek again when a demuxer landed after it.
SEEK_RETREATS_SECONDS = (1, 5, 30, 120)
# Decoders whose "non-reference" frames no other frame refers to, and that read skip_frame at
# each packet. Not HEVC (a sub-layer non-reference picture may be referred to by a higher
# sub-layer, and FFmpeg skips it all the same) nor dav1d (it reads skip_frame once, at opening).
SKIPPING_DECODERS = frozenset({"h264", "mpeg1video", "mpeg2video"})
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


@dataclass(frozen=True)
class StreamFacts:
    index: int
    kind: str  # video, audio, subtitle, attachment, data
    codec: str
    language: str  # "und" where none is set
    title: str
    dispositions: frozenset[str]
    tags: Mapping[str, str]  # lower-case keys, without language and title
    start_seconds: float | None  # the stream's first timestamp
    attachment_md5: str = ""  # an attachment's content, or an attached picture's


@dataclass(frozen=True)
class PictureFacts:
    """How the main video is to be shown."""

    width: int
    height: int
    sample_aspect_ratio: Fraction  # 1 where unset
    rotation: float
    field_order: str
    pix_fmt: str
    color_primaries: int
    color_transfer: int
    color_matrix: int
    color_range: int
    mastering_display: str  # raw side data, hex; "" if none
    content_light_level: str


@dataclass(frozen=True)
class Chapter:
    start_seconds: float
    end_seconds: float
    title: str


@dataclass(frozen=True)
class MediaFacts:
    container: str
    tags: Mapping[str, str]
    streams: tuple[StreamFacts, ...]
    chapters: tuple[Chapter, ...]
    video_index: int  # the main video stream (not a cover picture)
    picture: PictureFacts
    frame_pts: tuple[int, ...] = field(repr=False)  # presentation order
    time_base: Fraction = Fraction(1, 1000)
    duration_seconds: float = 0.0

    @property
    def video(self) -> StreamFacts:
        return next(s for s in self.streams if s.index == self.video_index)

    @property
    def video_start_seconds(self) -> float:
        return float(self.frame_pts[0] * self.time_base)

    @property
    def frame_count(self) -> int:
        return len(self.frame_pts)

    def frame_seconds(self, position: int) -> float:
        """A frame's time after the first frame."""
        return float((self.frame_pts[position] - self.frame_pts[0]) * self.time_base)


def read_facts(path: str | os.PathLike[str]) -> MediaFacts:
    """Everything the verifier compares; ProbeError if the file cannot be read as a video."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as error:
        raise ProbeError(f"{os.fspath(path)}: FFmpeg cannot read it ({error})") from error
    with container:
        streams = tuple(_with_picture_md5(container, _stream_facts(stream)) for stream in container.streams)
        video = next((s for s in streams if s.kind == "video" and "attached_pic" not in s.dispositions), None)
        if video is None:
            raise ProbeError(f"{os.fspath(path)}: no video stream found")
        av_video = container.streams[video.index]
        picture = _picture_facts(container, av_video)
        frame_pts, starts = _demux(container, video.index)
        starts.update(_audio_starts(path, [audio.index for audio in container.streams.audio]))
        streams = tuple(replace(s, start_seconds=starts.get(s.index, s.start_seconds)) for s in streams)
        time_base = Fraction(av_video.time_base.numerator, av_video.time_base.denominator)
        return MediaFacts(
            container=container.format.name,
            tags=_lower(container.metadata),
            streams=streams,
            chapters=tuple(_chapters(container)),
            video_index=video.index,
            picture=picture,
            frame_pts=frame_pts,
            time_base=time_base,
            duration_seconds=(container.duration or 0) / 1_000_000,
        )


def _lower(tags: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in tags.items()}


def _stream_facts(stream: Any) -> StreamFacts:
    tags = _lower(stream.metadata)
    language = tags.pop("language", "") or "und"
    title = tags.pop("title", "")
    flags = {flag.name for flag in av.stream.Disposition if flag.value and stream.disposition & flag.value}
    start = (float(stream.start_time * stream.time_base)
             if stream.start_time is not None and stream.time_base else None)  # fmt: skip
    codec = ""
    if stream.type != "attachment" and stream.codec_context is not None:
        codec = stream.codec_context.name
    attachment_md5 = ""
    if stream.type == "attachment":
        attachment_md5 = hashlib.md5(bytes(stream.data)).hexdigest()
    return StreamFacts(stream.index, stream.type, codec, language, title, frozenset(flags), tags, start,
                       attachment_md5)  # fmt: skip


def _with_picture_md5(container: Any, stream: StreamFacts) -> StreamFacts:
    """A cover picture's content, for comparing it wherever it is stored."""
    if "attached_pic" not in stream.dispositions:
        return stream
    return replace(stream, attachment_md5=hashlib.md5(attached_picture(container, stream.index)).hexdigest())


def attached_picture(container: Any, index: int) -> bytes:
    """The image of a cover-picture stream (the only packet it has)."""
    picture = container.streams[index]
    try:
        packet = next((p for p in container.demux(picture) if p.size), None)
    finally:
        container.seek(0)
    return bytes(packet) if packet is not None else b""


def read_attached_picture(path: str | os.PathLike[str], index: int) -> bytes:
    with av.open(str(path), metadata_errors="ignore") as container:
        return attached_picture(container, index)


def _picture_facts(container: Any, video: Any) -> PictureFacts:
    context = video.codec_context
    first = _first_frame(container, video)
    side_data = {str(entry.type).rsplit(".", 1)[-1]: bytes(entry).hex() for entry in first.side_data}
    sar = video.sample_aspect_ratio or context.sample_aspect_ratio
    aspect = Fraction(sar.numerator, sar.denominator) if sar and sar.numerator else Fraction(1)
    return PictureFacts(
        width=context.width,
        height=context.height,
        sample_aspect_ratio=aspect,
        rotation=float(first.rotation or 0),
        field_order=FIELD_ORDERS.get(int(context.field_order or 0), str(context.field_order)),
        pix_fmt=context.pix_fmt or "",
        color_primaries=int(context.color_primaries),
        color_transfer=int(context.color_trc),
        color_matrix=int(context.colorspace),
        color_range=int(context.color_range),
        mastering_display=side_data.get("MASTERING_DISPLAY_METADATA", ""),
        content_light_level=side_data.get("CONTENT_LIGHT_LEVEL", ""),
    )


def _first_frame(container: Any, video: Any) -> Any:
    try:
        for frame in container.decode(video):
            return frame
    except av.error.FFmpegError as error:
        raise ProbeError(f"{container.name}: its first video frame does not decode ({error})") from error
    finally:
        container.seek(0)
    raise ProbeError(f"{container.name}: its video holds no frame that decodes")


def _demux(container: Any, video_index: int) -> tuple[tuple[int, ...], dict[int, float]]:
    """The main video's frame pts in presentation order, and where each stream's first packet
    lies in seconds (what a demuxer reports as a stream's start is only an estimate)."""
    pts: list[int] = []
    starts: dict[int, float] = {}
    for packet in container.demux():
        timestamp = packet.pts if packet.pts is not None else packet.dts
        if timestamp is None or not packet.size:
            continue
        index = packet.stream.index
        if index == video_index:
            pts.append(timestamp)
        seconds = float(timestamp * packet.time_base)
        if index not in starts or seconds < starts[index]:
            starts[index] = seconds
    return tuple(sorted(pts)), starts


def _audio_starts(path: str | os.PathLike[str], indices: Iterable[int]) -> dict[int, float]:
    """Where each audio stream's first decoded samples lie: packet times differ between muxers
    by the encoder's priming (AAC's 1024 samples), which the decoder skips. Each stream is read
    from a fresh demuxer: after a seek, decoders skip differently."""
    starts: dict[int, float] = {}
    for index in indices:
        with av.open(str(path), metadata_errors="ignore") as container:
            frames = container.decode(container.streams[index])
            try:
                frame = next((f for f in frames if f.pts is not None), None)
            except av.error.FFmpegError:
                frame = None
            if frame is not None:
                starts[index] = float(frame.pts * frame.time_base)
    return starts


def _chapters(container: Any) -> Iterable[Chapter]:
    for chapter in container.chapters():
        time_base = chapter["time_base"]
        yield Chapter(float(chapter["start"] * time_base), float(chapter["end"] * time_base),
                      chapter["metadata"].get("title", ""))  # fmt: skip


Shrink = Callable[[Any], Any]  # a grey picture (numpy array) to what is kept of it


def pictures_at(
    path: str | os.PathLike[str], video_index: int, wanted: Mapping[int, int | None], shrink: Shrink
) -> dict[int, Any]:
    """Grey pictures (numpy arrays) of the frames whose pts are the keys of `wanted`.

    Each is reached from the keyframe whose pts is its value, by a seek and decoding on; None
    means from the file's start, without a seek (some decoders give garbage after any seek).
    With SKIPPING_DECODERS, frames that no other frame refers to are not decoded on the way
    (about half the work with B-frames); targets that do not all come out so are read again
    with every frame decoded."""
    by_start: dict[int | None, set[int]] = {}
    for pts, start in wanted.items():
        by_start.setdefault(start, set()).add(pts)
    pictures: dict[int, Any] = {}
    with av.open(str(path)) as container:
        skipping = container.streams[video_index].codec_context.name in SKIPPING_DECODERS
        for start, targets in by_start.items():
            read = partial(_pictures_from, path, container, video_index, start, targets, shrink)
            found = read(skip_unwanted=skipping)
            if found is None and skipping:
                found = read(skip_unwanted=False)
            pictures.update(found or {})
    return pictures


def _pictures_from(
    path: str | os.PathLike[str], container: Any, video_index: int, start: int | None, targets: set[int],
    shrink: Shrink, *, skip_unwanted: bool,
) -> dict[int, Any] | None:  # fmt: skip
    video = container.streams[video_index]
    step = round(1 / video.time_base) if video.time_base else 1  # a second
    decode = partial(_decode_from, targets=targets, shrink=shrink, skip_unwanted=skip_unwanted)
    found = None if start is None else decode(container, video, start)
    # Some demuxers (MPEG-TS) land after the keyframe asked for: go back further.
    for seconds_back in SEEK_RETREATS_SECONDS if start is not None else ():
        if found is not None:
            break
        found = decode(container, video, start - seconds_back * step)
    if found is None:  # from the start, in a fresh demuxer: no seek at all
        with av.open(str(path)) as fresh:
            found = decode(fresh, fresh.streams[video_index], None)
    return found


def _decode_from(
    container: Any, video: Any, start: int | None, *, targets: set[int], shrink: Shrink, skip_unwanted: bool
) -> dict[int, Any] | None:
    """The targets' pictures, decoding from a seek to start (None: the file's start); None unless
    every target came out (the demuxer landed after one). skip_unwanted: frames no other refers
    to are skipped before the first target; from its pts on (and where a packet has none) every
    packet is decoded, so that no part of a target (the second field of a field-coded frame, whose
    packet may have a pts of its own) is skipped."""
    if start is not None:
        container.seek(start, stream=video, backward=True)
    context = video.codec_context
    context.skip_frame = "DEFAULT"
    first, last = min(targets), max(targets)
    found: dict[int, Any] = {}
    for packet in container.demux(video):
        if skip_unwanted:
            context.skip_frame = "DEFAULT" if packet.pts is None or packet.pts >= first else "NONREF"
        for frame in packet.decode():
            if frame.pts is None:
                continue
            if not found and frame.pts > first:
                return None
            if frame.pts in targets:
                found[frame.pts] = shrink(frame.to_ndarray(format="gray"))
            if frame.pts >= last:
                return found if len(found) == len(targets) else None
    return found if len(found) == len(targets) else None


def decode_all(
    path: str | os.PathLike[str], video_index: int, positions: set[int], shrink: Shrink,
    threads: int | None = None,
) -> tuple[int, dict[int, Any]]:  # fmt: skip
    """Decode every frame of the video with threads (None: as many as the decoder likes): how
    many came out, and grey pictures of those at the given positions (in presentation order)."""
    pictures: dict[int, Any] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            video = container.streams[video_index]
            video.thread_type = "AUTO"
            if threads is not None:
                video.codec_context.thread_count = threads
            for count, frame in enumerate(container.decode(video), start=1):
                if count - 1 in positions:
                    pictures[count - 1] = shrink(frame.to_ndarray(format="gray"))
    except av.error.FFmpegError as error:
        raise ProbeError(f"{os.fspath(path)}: frame {count + 1} does not decode ({error})") from error
    return count, pictures


PACKET_DIGEST_BYTES = 16


def packet_digests(path: str | os.PathLike[str], video_index: int) -> list[bytes]:
    """A digest of every video packet's bytes, in the file's (decode) order: demuxing only, so
    that a mux can be proved to carry every packet of its segments, in order, without decoding."""
    try:
        with av.open(str(path)) as container:
            return [hashlib.blake2b(bytes(packet), digest_size=PACKET_DIGEST_BYTES).digest()
                    for packet in container.demux(container.streams[video_index]) if packet.size]  # fmt: skip
    except av.error.FFmpegError as error:
        raise ProbeError(f"{os.fspath(path)}: cannot read its packets ({error})") from error
