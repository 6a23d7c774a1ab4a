"""ffmpeg argv lists for every step. Pure: no I/O, never a shell string.

Every path is handed to ffmpeg as `file:/absolute/path`, so a name that starts with a dash or
holds a colon is never read as an option or a protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from ute import x265_params as x265_parameters
from ute.settings import EncodeSettings

COMMON = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-progress", "pipe:1")
# Before a source's -i: FFmpeg opens nothing but local files for it (a demuxer that names other
# resources, as playlists do, gets no network).
LOCAL_INPUT = ("-protocol_whitelist", "file")
# Subtitle codecs Matroska cannot hold, and what they become.
MATROSKA_SUBTITLE_CONVERSIONS = {"mov_text": "subrip"}


@dataclass(frozen=True)
class KeptStream:
    """A source stream that goes into the output: copied, or (the main video) encoded."""

    index: int
    kind: str
    codec: str
    dispositions: tuple[str, ...] = ()  # the flags it keeps: default, forced, ...
    stale_tags: tuple[str, ...] = ()  # tags to drop: they describe the old encoding


@dataclass(frozen=True)
class AttachedFile:
    """A file attached to the output (a cover picture, which Matroska keeps as an attachment)."""

    path: PurePath
    filename: str
    mimetype: str


@dataclass(frozen=True)
class ChunkInput:
    """Where a chunk's frames are in the source."""

    start_pts: int  # the chunk's first frame, in the video stream's time base
    frames: int
    # Where the demuxer is sent before reading (at or before start_pts); None: the file's start.
    seek_microseconds: int | None


@dataclass(frozen=True)
class RemoteSource:
    """A source a worker reads from the coordinator over HTTP(S) (see ute.transfer)."""

    url: str
    headers: tuple[tuple[str, str], ...]  # the file's token, and who asks for which chunk
    request_bytes: int  # ffmpeg asks for ranges of this size, on one kept-alive connection
    probe_request_bytes: int  # and of this size while it reads the container's header and index
    ca_file: str | None = None  # https: the authority to check the coordinator's certificate with

    def input_options(self) -> list[str]:
        # Only the protocols an http(s) URL needs: a demuxer that names other resources gets nothing else.
        options = ["-protocol_whitelist", "http,https,tcp,tls",
                   "-headers", "".join(f"{name}: {value}\r\n" for name, value in self.headers),
                   "-multiple_requests", "1", "-reconnect", "1",
                   "-max_redirects", "0", "-request_size", str(self.request_bytes),
                   "-initial_request_size", str(self.probe_request_bytes)]  # fmt: skip
        if self.url.startswith("https:"):  # the coordinator's certificate is checked, always
            options += ["-tls_verify", "1", *(["-ca_file", self.ca_file] if self.ca_file else [])]
        return options


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


def names_thread_pool(settings: EncodeSettings) -> bool:
    """Whether the settings' x265 parameters choose x265's threads themselves."""
    return bool(x265_parameters.named(settings.x265_params) & x265_parameters.THREAD_POOL_PARAMS)


def x265_params(settings: EncodeSettings, threads: int | None = None) -> str:
    """The settings' x265 parameters, with the encoder's log level and its thread pool (threads,
    when given) unless they name their own."""
    pairs = x265_parameters.parse(settings.x265_params)
    params = [f"{name}={value}" for name, value in pairs]
    named = {x265_parameters.canonical_name(name) for name, _ in pairs}
    if not named & x265_parameters.LOG_LEVEL_PARAMS:
        params.insert(0, "log-level=info")  # its closing summary is the chunk's log
    if threads is not None and not named & x265_parameters.THREAD_POOL_PARAMS:
        params.append(f"pools={threads}")
    return ":".join(params)


def encode_chunk(
    ffmpeg: str,
    source: PurePath | RemoteSource,
    video_index: int,
    chunk: ChunkInput,
    settings: EncodeSettings,
    output: PurePath,
    threads: int | None = None,
) -> list[str]:
    """Encode exactly `chunk.frames` frames, the first being the one at `chunk.start_pts`, with x265's
    thread pool of `threads` (None: x265's own choice, every core).

    Frames are picked by their own timestamps, not by where a seek lands: `-ss` before `-i`
    only brings the demuxer to the keyframe at or before the chunk (`-noaccurate_seek` drops
    nothing by time), and `trim` keeps the frames from `start_pts` on. Some decoders start
    with garbage after any seek (MPEG-4 Part 2 in AVI, even `-ss 0`), so the first chunk is
    read from the file's start without one. `-copyts` keeps the source's timestamps for
    `trim` to compare; `-enc_time_base demux` keeps every frame's own timestamp (the default
    snaps a variable frame rate to the nominal rate's grid). `-noautorotate` keeps the
    pixels as stored: the rotation travels as the source's display matrix.
    """
    seek = [] if chunk.seek_microseconds is None else ["-ss", seconds_argument(chunk.seek_microseconds)]
    filters = [f"trim=start_pts={chunk.start_pts}", "setpts=PTS-STARTPTS"]
    if settings.crop:
        filters.append(f"crop={settings.crop}")
    return [
        ffmpeg, *COMMON,
        "-copyts", "-noaccurate_seek", "-noautorotate", *seek,
        *_input(source),
        "-map", f"0:{video_index}",
        "-vf", ",".join(filters),
        "-frames:v", str(chunk.frames),
        "-fps_mode", "passthrough", "-enc_time_base:v", "demux",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-c:v", "libx265",
        "-preset", settings.preset,
        "-crf", f"{settings.crf:g}",
        "-x265-params", x265_params(settings, threads),
        "-f", "matroska", "-y", file_url(output),
    ]  # fmt: skip


def _input(source: PurePath | RemoteSource) -> list[str]:
    if isinstance(source, RemoteSource):
        return [*source.input_options(), "-i", source.url]
    return [*LOCAL_INPUT, "-i", file_url(source)]


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
    video: KeptStream,
    kept: Sequence[KeptStream],
    attached: Sequence[AttachedFile],
    video_offset_microseconds: int,
    output: PurePath,
    field_order: str | None = None,
) -> list[str]:
    """Join the segments and copy every kept source stream, the tags and the chapters.

    Each stream's tags and flags are named one by one: a single per-stream `-map_metadata`
    switches off ffmpeg's default copying for all the others (languages and titles vanish,
    an attachment loses the file name Matroska needs), and Matroska's muxer would otherwise
    invent default flags (`-default_mode passthrough`). The encoder derives an interlaced
    video's field order from its frames (top first becomes "tb"); the source's is restored.
    """
    argv = [ffmpeg, *COMMON]
    if video_offset_microseconds:
        argv += ["-itsoffset", seconds_argument(video_offset_microseconds)]
    argv += ["-f", "concat", "-safe", "0", "-i", file_url(concat_list_path)]
    argv += [*LOCAL_INPUT, "-i", file_url(source), "-map", "0:v:0"]
    for stream in kept:
        argv += ["-map", f"1:{stream.index}"]
    argv += ["-map_metadata", "1", "-map_chapters", "1"]
    for output_index, stream in enumerate([video, *kept]):
        argv += [f"-map_metadata:s:{output_index}", f"1:s:{stream.index}",
                 f"-disposition:{output_index}", "+".join(stream.dispositions) or "0"]  # fmt: skip
    for tag in video.stale_tags:
        argv += ["-metadata:s:0", f"{tag}="]
    for picture in attached:
        argv += ["-attach", file_url(picture.path)]
    copied_attachments = sum(1 for stream in kept if stream.kind == "attachment")
    for number, picture in enumerate(attached, start=copied_attachments):  # they follow the copied ones
        attachment = f"-metadata:s:t:{number}"
        argv += [attachment, f"filename={picture.filename}", attachment, f"mimetype={picture.mimetype}"]
    argv += ["-c", "copy"]
    if field_order:
        argv += ["-field_order:0", field_order]
    for output_index, stream in enumerate(kept, start=1):
        converted = MATROSKA_SUBTITLE_CONVERSIONS.get(stream.codec)
        if stream.kind == "subtitle" and converted:
            argv += [f"-c:{output_index}", converted]
    argv += ["-default_mode", "passthrough", "-f", "matroska", "-y", file_url(output)]
    return argv


def decode_video(ffmpeg: str, path: PurePath) -> list[str]:
    """Decode every frame of the first video stream and throw it away (for counting)."""
    return [
        ffmpeg, *COMMON,
        "-i", file_url(path),
        "-map", "0:v:0", "-fps_mode", "passthrough",
        "-f", "null", "-",
    ]  # fmt: skip
