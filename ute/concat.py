"""Joins the finished segments in order and muxes them with every other stream of the source."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ute import commands, runner, tools
from ute.commands import KeptStream, Segment
from ute.jobs import segment_name
from ute.plan import Chunk
from ute.probe import SourceInfo

log = logging.getLogger(__name__)

CONCAT_LIST_NAME = "segments.ffconcat"
# Matroska has no place for these; they are left out with a warning.
DROPPED_KINDS = frozenset({"data", "unknown"})


def kept_streams(info: SourceInfo) -> list[KeptStream]:
    """Every source stream except the one being encoded and those Matroska cannot hold."""
    return [
        KeptStream(stream.index, stream.kind, stream.codec)
        for stream in info.streams
        if stream.index != info.video_index and stream.kind not in DROPPED_KINDS
    ]


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


def mux(info: SourceInfo, chunks: Sequence[Chunk], work_dir: Path, output: Path) -> None:
    """Write `output` from the segments in work_dir and the source's other streams."""
    dropped = [s for s in info.streams if s.kind in DROPPED_KINDS]
    for stream in dropped:
        log.warning("%s: stream %d (%s) cannot go into Matroska; it is left out",
                    Path(info.path).name, stream.index, stream.kind)  # fmt: skip
    concat_list_path = work_dir / CONCAT_LIST_NAME
    concat_list_path.write_text(commands.concat_list(segments(info, chunks)), encoding="utf-8")
    argv = commands.mux(
        tools.ffmpeg(), concat_list_path, Path(info.path), info.video_index,
        kept_streams(info), info.microseconds_from_start(info.first_pts), output,
    )  # fmt: skip
    runner.run(argv)
