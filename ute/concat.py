"""Joins the finished segments in order and muxes them with every other stream of the source."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ute import commands, compare, facts, runner, tools
from ute.commands import AttachedFile, KeptStream, Segment
from ute.facts import KEPT_DISPOSITIONS, MediaFacts, StreamFacts
from ute.plan import Chunk, segment_name
from ute.probe import SourceInfo

log = logging.getLogger(__name__)

CONCAT_LIST_NAME = "segments.ffconcat"
INTERLACED = frozenset({"tt", "bb", "tb", "bt"})
PICTURE_TYPES = {"mjpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png"), "bmp": ("bmp", "image/bmp"),
                 "gif": ("gif", "image/gif"), "webp": ("webp", "image/webp")}  # fmt: skip


def segments(info: SourceInfo, chunks: Sequence[Chunk]) -> list[Segment]:
    """Each segment lasts exactly until the next chunk's first frame, even at a variable rate."""
    starts = [info.keyframe_pts_at(chunk.start) for chunk in chunks]
    return [
        Segment(
            segment_name(chunk.index),
            info.pts_seconds(starts[position + 1] - starts[position])
            if position + 1 < len(chunks) else None,
        )
        for position, chunk in enumerate(chunks)
    ]  # fmt: skip


def _kept(stream: StreamFacts, *, encoded: bool = False) -> KeptStream:
    flags = tuple(sorted(stream.dispositions & set(KEPT_DISPOSITIONS)))
    stale = tuple(key for key in stream.tags if encoded and key.split("-")[0] in compare.IGNORED_STREAM_TAGS)
    return KeptStream(stream.index, stream.kind, stream.codec, flags, stale)


def cover_file(stream: StreamFacts, work_dir: Path) -> AttachedFile:
    """Where a cover picture is written for attaching, with the name and type Matroska wants."""
    extension, mimetype = PICTURE_TYPES.get(stream.codec, ("bin", "application/octet-stream"))
    filename = stream.tags.get("filename") or f"cover-{stream.index}.{extension}"
    return AttachedFile(work_dir / f"cover-{stream.index}.{extension}", filename,
                        stream.tags.get("mimetype") or mimetype)  # fmt: skip


def mux(info: SourceInfo, source: MediaFacts, chunks: Sequence[Chunk], work_dir: Path, output: Path) -> None:
    """Write `output` from the segments in work_dir and the source's other streams."""
    name = Path(info.path).name
    for stream in source.streams:
        if stream.kind in compare.DROPPED_KINDS:
            log.warning("%s: stream %d (%s, %s) cannot go into Matroska; it is left out%s", name,
                        stream.index, stream.kind, stream.codec or "unknown codec",
                        f" (its tags: {dict(stream.tags)})" if stream.tags else "")  # fmt: skip
    kept = [s for s in compare.kept(source) if s.index != source.video_index]
    covers = [s for s in kept if "attached_pic" in s.dispositions]
    attached = [cover_file(stream, work_dir) for stream in covers]
    for stream, attachment in zip(covers, attached, strict=True):
        Path(attachment.path).write_bytes(facts.read_attached_picture(info.path, stream.index))
    concat_list_path = work_dir / CONCAT_LIST_NAME
    concat_list_path.write_text(commands.concat_list(segments(info, chunks)), encoding="utf-8")
    argv = commands.mux(
        tools.ffmpeg(), concat_list_path, Path(info.path), _kept(source.video, encoded=True),
        [_kept(s) for s in kept if s not in covers], attached,
        info.microseconds_from_start(info.first_pts), output,
        field_order=source.picture.field_order if source.picture.field_order in INTERLACED else None,
    )  # fmt: skip
    runner.run(argv)
