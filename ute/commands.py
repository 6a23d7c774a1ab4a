"""ffmpeg argv lists for every step. Pure: no I/O, never a shell string.

Every path is handed to ffmpeg as `file:/absolute/path`, so a name that starts with a dash or
holds a colon is never read as an option or a protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from ute.settings import EncodeSettings

COMMON = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-progress", "pipe:1")
# Subtitle codecs Matroska cannot hold, and what they become.
MATROSKA_SUBTITLE_CONVERSIONS = {"mov_text": "srt"}


@dataclass(frozen=True)
class KeptStream:
    """A source stream copied beside the encoded video."""

    index: int
    kind: str
    codec: str


@dataclass(frozen=True)
class Segment:
    name: str  # a plain file name in the concat list's own folder
    duration_seconds: float | None  # exact time to the next segment; None for the last


def file_url(path: PurePath | str) -> str:
    path = PurePath(path)
    if not path.is_absolute():
        raise ValueError(f"ffmpeg paths must be absolute: {path}")
    return f"file:{path}"


def seconds_argument(microseconds: int) -> str:
    """Exact decimal seconds, with no float rounding on the way."""
    sign = "-" if microseconds < 0 else ""
    whole, fraction = divmod(abs(microseconds), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def x265_params(settings: EncodeSettings) -> str:
    params = [p for p in settings.x265_params.split(":") if p]
    if not any(p.startswith("log-level") for p in params):
        params.insert(0, "log-level=info")  # its closing summary is the chunk's log
    return ":".join(params)


def encode_chunk(
    ffmpeg: str,
    source: PurePath,
    video_index: int,
    seek_microseconds: int,
    frames: int,
    settings: EncodeSettings,
    output: PurePath,
) -> list[str]:
    """Encode exactly `frames` frames from the keyframe at the seek point into Matroska.

    `-ss` before `-i` seeks to the keyframe and drops nothing when it is the keyframe's own
    time; `-fps_mode passthrough` stops ffmpeg from duplicating or dropping frames.
    """
    return [
        ffmpeg, *COMMON,
        "-ss", seconds_argument(seek_microseconds),
        "-i", file_url(source),
        "-map", f"0:{video_index}",
        "-frames:v", str(frames),
        "-fps_mode", "passthrough",
        *(["-vf", f"crop={settings.crop}"] if settings.crop else []),
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-c:v", "libx265",
        "-preset", settings.preset,
        "-crf", f"{settings.crf:g}",
        "-x265-params", x265_params(settings),
        "-f", "matroska", "-y", file_url(output),
    ]  # fmt: skip


def concat_list(segments: Sequence[Segment]) -> str:
    """A concat demuxer script; explicit durations keep variable-frame-rate timing exact."""
    lines = ["ffconcat version 1.0"]
    for segment in segments:
        if "'" in segment.name or "\n" in segment.name or "/" in segment.name:
            raise ValueError(f"segment names are plain file names: {segment.name!r}")
        lines.append(f"file '{segment.name}'")
        if segment.duration_seconds is not None:
            lines.append(f"duration {segment.duration_seconds:.6f}")
    return "\n".join(lines) + "\n"


def mux(
    ffmpeg: str,
    concat_list_path: PurePath,
    source: PurePath,
    video_index: int,
    kept: Sequence[KeptStream],
    video_offset_microseconds: int,
    output: PurePath,
) -> list[str]:
    """Join the segments and copy every kept source stream, the tags and the chapters."""
    argv = [ffmpeg, *COMMON]
    if video_offset_microseconds:
        argv += ["-itsoffset", seconds_argument(video_offset_microseconds)]
    argv += ["-f", "concat", "-safe", "0", "-i", file_url(concat_list_path)]
    argv += ["-i", file_url(source), "-map", "0:v:0"]
    for stream in kept:
        argv += ["-map", f"1:{stream.index}"]
    argv += [
        "-map_metadata", "1",
        "-map_metadata:s:v:0", f"1:s:{video_index}",
        "-map_chapters", "1",
        "-metadata:s:v:0", "ENCODER=",  # the source's encoder tag would name the old codec
        "-c", "copy",
    ]  # fmt: skip
    for output_index, stream in enumerate(kept, start=1):
        converted = MATROSKA_SUBTITLE_CONVERSIONS.get(stream.codec)
        if stream.kind == "subtitle" and converted:
            argv += [f"-c:{output_index}", converted]
    argv += ["-f", "matroska", "-y", file_url(output)]
    return argv


def decode_video(ffmpeg: str, path: PurePath) -> list[str]:
    """Decode every frame of the first video stream and throw it away (for counting)."""
    return [
        ffmpeg, *COMMON,
        "-i", file_url(path),
        "-map", "0:v:0", "-fps_mode", "passthrough",
        "-f", "null", "-",
    ]  # fmt: skip
