"""What a media file holds: the only module that imports PyAV and pymediainfo.

The keyframe index comes from one packet demux of the video stream (no decoding): a 2-hour,
172,627-frame file takes well under a second.
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

import av
import av.error

from ute.errors import NotMediaError, NoVideoError, ProbeError

log = logging.getLogger(__name__)

# A video whose packets stop this long before the container's declared end is truncated.
TRUNCATION_TOLERANCE_SECONDS = 2.0
TRUNCATION_TOLERANCE_FRACTION = 0.05
MP4_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx",
                   b"moof")  # fmt: skip
# How files of audio and video formats start, as (offset, bytes). FFmpeg cannot open the first few KB
# a copy has written of most of them, so these bytes tell such a copy from a file that is no media.
MEDIA_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, bytes.fromhex("1a45dfa3")),  # Matroska, WebM
    *((4, box) for box in MP4_FIRST_BOXES),  # MP4, MOV, 3GP
    (0, b"RIFF"), (0, b"RF64"),  # AVI, WAV
    (0, b"FLV\x01"), (0, b"OggS"), (0, b".RMF"), (0, b"DKIF"), (0, b"YUV4MPEG2"),
    (0, bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")),  # ASF, WMV
    (0, bytes.fromhex("060e2b34")),  # MXF
    (0, b"\x00\x00\x01"), (0, b"\x00\x00\x00\x01"),  # MPEG-PS, MPEG-1/2 video, H.264/HEVC streams
    (0, b"ID3"), (0, b"fLaC"), (0, b"\xff\xd8\xff"),  # MP3, FLAC, JPEG
    *((0, bytes([0xFF, second])) for second in (0xF1, 0xF9, 0xFB, 0xFA, 0xF3, 0xF2, 0xE3)),  # AAC, MP3 frames
    (0, b"\x89PNG"), (0, b"GIF8"),
)
# MPEG-TS packets start with 0x47 every 188 bytes; M2TS puts a 4-byte timestamp before each.
TS_SYNC, TS_PACKETS = 0x47, ((0, 188), (4, 192))
HEAD_BYTES = 1024
# Demuxers whose stream list more bytes cannot grow: a header declares every stream (for a copy cut
# inside it, FFmpeg finds no packets), or the format holds a single audio or subtitle stream. Others
# (MPEG-PS and -TS, FLV, raw streams) add streams as their packets come: an early part of a video
# may hold audio packets only.
FINAL_STREAM_LIST_FORMATS = frozenset({
    "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "avi", "asf", "ogg",
    "mp3", "aac", "flac", "wav", "w64", "aiff", "ac3", "eac3", "dts", "truehd", "mlp", "amr", "ape", "wv",
    "tta", "caf", "au", "mpc", "mpc8", "dsf", "loas",
    "srt", "ass", "webvtt", "microdvd", "subviewer", "subviewer1", "sami", "realtext", "jacosub", "mpl2",
    "pjs", "stl", "vplayer", "lrc", "aqtitle", "mcc", "scc", "sup",
})  # fmt: skip
# FFmpeg's demuxers of text-mode art: they show any .txt, .nfo, .asc, .bin, ... file as a "video".
TEXT_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
# Demuxers that open other files or URLs named inside the file, and how such files begin.
REFERENCE_FORMATS = frozenset({"hls", "applehttp", "dash", "sdp", "rtp", "rtsp", "concat", "imf",
                               "webm_dash_manifest"})  # fmt: skip
REFERENCE_SIGNATURES = (b"#extm3u", b"ffconcat", b"<?xml", b"<mpd", b"v=0\n", b"v=0\r\n")
# Only local files, even for a demuxer that would open more (no network at all).
LOCAL_ONLY = {"protocol_whitelist": "file"}


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # video, audio, subtitle, attachment, data
    codec: str
    attached_pic: bool = False


@dataclass(frozen=True)
class SourceInfo:
    path: str
    size: int
    mtime_ns: int
    container: str
    streams: tuple[StreamInfo, ...]
    chapters: int
    # ffmpeg's `-ss` counts from this container start time, in microseconds.
    start_time_us: int
    video_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    fps: float
    frame_count: int
    keyframes: tuple[int, ...]  # presentation-order frame numbers
    keyframe_pts: tuple[int, ...]  # the same keyframes' pts, in time_base
    first_pts: int
    duration_pts: int  # first frame's start to last frame's end, in time_base
    variable_frame_rate: bool

    @property
    def duration_seconds(self) -> float:
        return float(self.duration_pts * self.time_base)

    @property
    def frame_seconds(self) -> float:
        return 1.0 / self.fps if self.fps > 0 else 0.0

    def microseconds_from_start(self, pts: int) -> int:
        """How far pts lies after the container start, exactly, in whole microseconds: what
        ffmpeg's `-ss` and `-itsoffset` count from."""
        return round(pts * self.time_base * 1_000_000) - self.start_time_us

    def seconds_from_start(self, pts: int) -> float:
        return self.microseconds_from_start(pts) / 1_000_000

    def keyframe_pts_at(self, frame: int) -> int:
        """The pts of keyframe number `frame` (chunks start on keyframes; frame 0 is one)."""
        position = bisect.bisect_left(self.keyframes, frame)
        if position == len(self.keyframes) or self.keyframes[position] != frame:
            raise ValueError(f"frame {frame} is not a keyframe")
        return self.keyframe_pts[position]

    def pts_seconds(self, pts: int) -> float:
        return float(pts * self.time_base)

    def count(self, kind: str) -> int:
        return sum(1 for stream in self.streams if stream.kind == kind)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time_base"] = f"{self.time_base.numerator}/{self.time_base.denominator}"
        return data


def probe(path: str | os.PathLike[str]) -> SourceInfo:
    """Read a source's streams and keyframe index; ProbeError (one line) if it is not usable."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise ProbeError(f"{path}: cannot read it ({error.strerror})") from error
    if not path.is_file():
        raise ProbeError(f"{path}: not a regular file")
    if stat.st_size == 0:
        raise ProbeError(f"{path}: the file is empty (0 bytes)")
    if names_other_files(path):
        raise NotMediaError(f"{path}: a playlist or stream description, which would make FFmpeg read other "
                            "files or URLs; UTE encodes media files only, copy the video itself")  # fmt: skip
    try:
        container = av.open(str(path), metadata_errors="ignore", options=LOCAL_ONLY)
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        if not could_be_media(path):
            raise NotMediaError(
                f"{path}: not a media file (FFmpeg cannot read it and its first bytes match no audio or "
                "video format); UTE encodes videos only, check that the right file was copied"
            ) from error
        raise ProbeError(
            f"{path}: FFmpeg cannot read it ({_reason(error)}): not a video, or an incomplete copy"
        ) from error
    with container:
        if set(container.format.name.split(",")) & REFERENCE_FORMATS:
            raise NotMediaError(f"{path}: a {container.format.name} file, which makes FFmpeg read "
                                "other files or URLs; UTE encodes media files only, copy the video itself")
        if container.format.name in TEXT_FORMATS:
            raise NotMediaError(
                f"{path}: a text file, not a video; UTE encodes videos only, check that the right file "
                "was copied"
            )
        return _probe_container(path, stat, container)


def names_other_files(path: Path) -> bool:
    """Whether the file is a playlist or stream description (HLS, DASH, SDP, ffconcat, IMF):
    FFmpeg would open the files and URLs it names, so it is refused before FFmpeg sees it."""
    try:
        with path.open("rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError:
        return False
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith(REFERENCE_SIGNATURES)


def could_be_media(path: Path) -> bool:
    """Whether the file starts like an audio or video file, or like the first bytes of a copy of one
    (those of a format's signature that are there yet, or zeros where a copy preallocated it)."""
    try:
        with path.open("rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError:
        return True  # no verdict on a file that cannot be read now
    if not head.strip(b"\0"):
        return True
    for offset, magic in MEDIA_SIGNATURES:
        there = head[offset : offset + len(magic)]
        if there == magic[: len(there)]:
            return True
    return any(
        all(head[position] == TS_SYNC for position in range(first, min(len(head), first + 5 * size), size))
        for first, size in TS_PACKETS
    )


def _probe_container(path: Path, stat: os.stat_result, container: Any) -> SourceInfo:
    streams = tuple(
        StreamInfo(
            index=stream.index,
            kind=stream.type,
            codec=stream.codec_context.name if stream.codec_context else "unknown",
            attached_pic=bool(stream.disposition & av.stream.Disposition.attached_pic),
        )
        for stream in container.streams
    )
    video = next(
        (s for s, info in zip(container.streams, streams, strict=True)
         if info.kind == "video" and not info.attached_pic),
        None,
    )  # fmt: skip
    if video is None:
        _refuse_without_video(path, container, streams)
    if video.time_base is None:
        raise ProbeError(f"{path}: the video stream has no time base")
    if video.codec_context is None:
        raise ProbeError(f"{path}: FFmpeg does not know the video codec: not a video, or an incomplete copy")

    pts_list, keyframe_pts, last_duration = _demux_video_timestamps(path, container, video)
    if not pts_list:
        raise ProbeError(f"{path}: the video stream holds no frames")
    pts_list.sort()
    time_base = Fraction(video.time_base.numerator, video.time_base.denominator)
    fps = _frame_rate(video, pts_list, time_base)
    if last_duration <= 0:
        last_duration = round(1 / (fps * time_base)) if fps > 0 else 0
    first_pts = pts_list[0]
    duration_pts = pts_list[-1] + last_duration - first_pts
    _check_complete(path, container, float((pts_list[-1] + last_duration) * time_base))

    keyframe_pts = sorted(set(keyframe_pts) | {first_pts})
    keyframes = tuple(bisect.bisect_left(pts_list, pts) for pts in keyframe_pts)
    codec_context = video.codec_context
    return SourceInfo(
        path=str(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        container=container.format.name,
        streams=streams,
        chapters=len(container.chapters()) if hasattr(container, "chapters") else 0,
        start_time_us=container.start_time or 0,
        video_index=video.index,
        codec=codec_context.name,
        width=codec_context.width,
        height=codec_context.height,
        pix_fmt=codec_context.pix_fmt or "",
        time_base=time_base,
        fps=fps,
        frame_count=len(pts_list),
        keyframes=keyframes,
        keyframe_pts=tuple(keyframe_pts),
        first_pts=first_pts,
        duration_pts=duration_pts,
        variable_frame_rate=_is_variable_frame_rate(path),
    )


def _demux_video_timestamps(
    path: Path, container: Any, video: Any
) -> tuple[list[int], list[int], int]:
    pts_list: list[int] = []
    keyframe_pts: list[int] = []
    last_duration = 0
    latest_pts: int | None = None
    try:
        for packet in container.demux(video):
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None or packet.size == 0:
                continue
            pts_list.append(timestamp)
            if packet.is_keyframe:
                keyframe_pts.append(timestamp)
            if latest_pts is None or timestamp >= latest_pts:
                latest_pts, last_duration = timestamp, packet.duration or 0
    except av.error.FFmpegError as error:
        done = float(max(pts_list, default=0) * video.time_base)
        raise ProbeError(
            f"{path}: damaged or truncated after {done:.1f} s ({_reason(error)})"
        ) from error
    return pts_list, keyframe_pts, last_duration


def _frame_rate(video: Any, sorted_pts: list[int], time_base: Fraction) -> float:
    for rate in (video.average_rate, video.guessed_rate, video.base_rate):
        if rate:
            return float(rate)
    if len(sorted_pts) > 1:
        span = float((sorted_pts[-1] - sorted_pts[0]) * time_base)
        return (len(sorted_pts) - 1) / span if span > 0 else 0.0
    return 0.0


def _refuse_without_video(path: Path, container: Any, streams: tuple[StreamInfo, ...]) -> NoReturn:
    """NoVideoError for a whole file; a copy cut inside its header may not list its video yet, but
    then it has no packets, or they stop before the duration the header declares."""
    if container.format.name not in FINAL_STREAM_LIST_FORMATS:
        raise ProbeError(f"{path}: no video stream found ({container.format.name}): not a video, or an "
                         "incomplete copy")  # fmt: skip
    end_seconds, packets = 0.0, 0
    try:
        for packet in container.demux():
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if packet.size == 0:
                continue
            packets += 1
            if timestamp is not None and packet.time_base is not None:
                end_seconds = max(end_seconds, float((timestamp + (packet.duration or 0)) * packet.time_base))
    except av.error.FFmpegError as error:
        raise ProbeError(
            f"{path}: no video stream found, and damaged or truncated after {end_seconds:.1f} s "
            f"({_reason(error)})"
        ) from error
    if not packets:
        raise ProbeError(f"{path}: no video stream found and no packets: not a video, or an incomplete copy")
    _check_complete(path, container, end_seconds, what="its packets end")
    kinds = ", ".join(f"{'cover art' if s.attached_pic else s.kind} {s.codec}" for s in streams)
    raise NoVideoError(
        f"{path}: has no video stream (only {kinds}): UTE encodes videos only, check that the right file "
        "was copied"
    )


def _check_complete(path: Path, container: Any, end_seconds: float, what: str = "video ends") -> None:
    """A truncated copy still declares the whole duration in its header; its packets stop early."""
    if not container.duration:
        return
    declared = (container.duration + (container.start_time or 0)) / 1_000_000
    tolerance = max(TRUNCATION_TOLERANCE_SECONDS, TRUNCATION_TOLERANCE_FRACTION * declared)
    if end_seconds < declared - tolerance:
        raise ProbeError(
            f"{path}: truncated: {what} at {end_seconds:.1f} s but the file declares {declared:.1f} s"
        )


def _is_variable_frame_rate(path: Path) -> bool:
    from pymediainfo import MediaInfo

    try:
        media_info = MediaInfo.parse(str(path))
    except Exception as error:  # pymediainfo raises plain Exceptions on unreadable input
        log.debug("mediainfo could not read %s: %s", path, error)
        return False
    video_tracks = media_info.video_tracks
    return bool(video_tracks) and video_tracks[0].frame_rate_mode == "VFR"


def count_frames(path: str | os.PathLike[str]) -> int:
    """Video packets of the first video stream: a segment's frame count, without decoding."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            video = container.streams.video[0]
            return sum(1 for packet in container.demux(video) if packet.size)
    except (av.error.FFmpegError, OSError):
        return 0


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error).splitlines()[0]
