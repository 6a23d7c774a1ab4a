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
from typing import Any

import av
import av.error

from ute.errors import ProbeError

log = logging.getLogger(__name__)

# A video whose packets stop this long before the container's declared end is truncated.
TRUNCATION_TOLERANCE_SECONDS = 2.0
TRUNCATION_TOLERANCE_FRACTION = 0.05


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
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise ProbeError(
            f"{path}: FFmpeg cannot read it ({_reason(error)}): not a video, or an incomplete copy"
        ) from error
    with container:
        return _probe_container(path, stat, container)


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
        raise ProbeError(f"{path}: no video stream found (is it a video file?)")
    if video.time_base is None:
        raise ProbeError(f"{path}: the video stream has no time base")

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


def _check_complete(path: Path, container: Any, video_end_seconds: float) -> None:
    """A truncated copy still declares the whole duration in its header; its packets stop early."""
    if not container.duration:
        return
    declared = (container.duration + (container.start_time or 0)) / 1_000_000
    tolerance = max(TRUNCATION_TOLERANCE_SECONDS, TRUNCATION_TOLERANCE_FRACTION * declared)
    if video_end_seconds < declared - tolerance:
        raise ProbeError(
            f"{path}: truncated: video ends at {video_end_seconds:.1f} s "
            f"but the file declares {declared:.1f} s"
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
