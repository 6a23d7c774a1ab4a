"""An output counts only if it matches its source: every frame decodes, every stream is there."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ute import commands, probe, runner, tools
from ute.concat import kept_streams
from ute.errors import ProbeError, VerifyError
from ute.probe import SourceInfo

log = logging.getLogger(__name__)

# Timestamps round to the container's clock (1 ms in Matroska) on top of one frame's leeway.
DURATION_SLACK_SECONDS = 0.002


@dataclass(frozen=True)
class Verified:
    frames: int
    duration_seconds: float
    size: int


def count_decoded_frames(path: Path) -> int:
    """Decode the first video stream to the end and count the frames that came out."""
    frames = 0

    def remember(block: dict[str, str]) -> None:
        nonlocal frames
        frames = int(block.get("frame", frames) or frames)

    runner.run(commands.decode_video(tools.ffmpeg(), path), on_progress=remember)
    return frames


def verify_output(source: SourceInfo, output: Path) -> Verified:
    """Raise VerifyError naming the first thing that differs between output and source."""
    name = output.name
    try:
        result = probe.probe(output)
    except ProbeError as error:
        raise VerifyError(f"output {name} is unreadable: {error}") from error

    decoded = count_decoded_frames(output)
    if decoded != source.frame_count:
        raise VerifyError(
            f"output {name} decodes to {decoded} frames, the source has {source.frame_count}"
        )
    expected_kinds = [s.kind for s in kept_streams(source)] + ["video"]
    for kind in sorted(set(expected_kinds)):
        if result.count(kind) != expected_kinds.count(kind):
            raise VerifyError(
                f"output {name} has {result.count(kind)} {kind} streams, "
                f"expected {expected_kinds.count(kind)}"
            )
    if result.chapters != source.chapters:
        raise VerifyError(f"output {name} has {result.chapters} chapters, the source {source.chapters}")
    difference = abs(result.duration_seconds - source.duration_seconds)
    if difference > source.frame_seconds + DURATION_SLACK_SECONDS:
        raise VerifyError(
            f"output {name} lasts {result.duration_seconds:.3f} s, "
            f"the source {source.duration_seconds:.3f} s"
        )
    return Verified(decoded, result.duration_seconds, output.stat().st_size)
