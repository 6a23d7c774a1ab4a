"""Cutting a video into keyframe-aligned chunks. Pure: no I/O, so it is tested hard.

A chunk is the frames [start, end) in presentation order. Every chunk starts on a keyframe
(the first one starts on frame 0), the chunks cover every frame exactly once, and they are as
close to the target length as the keyframes allow:

- no chunk but a whole-file one is shorter than `min_frames` (so there is never a tiny last chunk);
- a chunk is longer than `max_frames` only where no keyframe lies in the window that would
  have allowed a shorter one.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ute.settings import DEFAULT_CHUNK_SECONDS, MIN_CHUNK_SECONDS, SHORT_FILE_CHUNKS


@dataclass(frozen=True, order=True)
class Chunk:
    index: int
    start: int
    end: int  # exclusive

    @property
    def frames(self) -> int:
        return self.end - self.start


def segment_name(chunk_index: int) -> str:
    """The file a chunk's encode is committed as, in the file's work folder."""
    return f"{chunk_index:05d}.mkv"


@dataclass(frozen=True)
class ChunkBounds:
    target: int
    min_frames: int
    max_frames: int

    @classmethod
    def around(cls, target: int) -> ChunkBounds:
        """Bounds from half to twice the target: room to find a keyframe near it."""
        target = max(1, target)
        return cls(target=target, min_frames=max(1, target // 2), max_frames=target * 2)


def target_frames(fps: float, chunk_frames: int | None, frame_count: int) -> int:
    """The chunk length asked for, else about DEFAULT_CHUNK_SECONDS of video, or less for a file
    too short to give SHORT_FILE_CHUNKS such chunks (down to MIN_CHUNK_SECONDS). It depends on
    the file and the settings alone, so that a run resumed by other workers cuts it the same way."""
    if chunk_frames:
        return chunk_frames
    if fps <= 0:
        return 240
    shared = max(round(fps * MIN_CHUNK_SECONDS), -(-frame_count // SHORT_FILE_CHUNKS))
    return max(1, min(round(fps * DEFAULT_CHUNK_SECONDS), shared))


def plan_chunks(frame_count: int, keyframes: Sequence[int], bounds: ChunkBounds) -> list[Chunk]:
    """Chunks covering frames [0, frame_count), each starting on a keyframe."""
    if frame_count <= 0:
        return []
    cuts = sorted({k for k in keyframes if 0 < k < frame_count})
    chunks: list[Chunk] = []
    start = 0
    while start < frame_count:
        end = _next_cut(start, frame_count, cuts, bounds)
        chunks.append(Chunk(len(chunks), start, end))
        start = end
    return chunks


def _next_cut(start: int, frame_count: int, cuts: list[int], bounds: ChunkBounds) -> int:
    # A cut must leave at least min_frames on both sides, and should not pass max_frames.
    lowest = start + bounds.min_frames
    highest = min(start + bounds.max_frames, frame_count - bounds.min_frames)
    window = cuts[bisect.bisect_left(cuts, lowest) : bisect.bisect_right(cuts, highest)]
    candidates = list(window)
    if frame_count - start <= bounds.max_frames:
        candidates.append(frame_count)
    if candidates:
        ideal = start + bounds.target
        return min(candidates, key=lambda cut: (abs(cut - ideal), cut))
    # No keyframe within bounds: take the first one that still leaves a long enough tail.
    later = bisect.bisect_left(cuts, lowest)
    if later < len(cuts) and cuts[later] <= frame_count - bounds.min_frames:
        return cuts[later]
    return frame_count
