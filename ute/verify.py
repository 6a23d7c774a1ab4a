"""An output counts only if it matches its source: field by field, and picture by picture.

`compare.differences` checks every stream, tag, flag, attachment, chapter, frame timestamp and
the picture's description. Lossy frames can't be compared bit for bit, so the first and last
frame of every chunk are decoded from both files and compared as pictures: a chunk of garbage,
a shifted chunk or chunks in the wrong order look more like some other place in the source
than like their own, or like nothing at all.

The output's side of that scales with the swarm: each worker decodes the segment it encoded
before committing it (check_segment: every frame decodes, and its first and last picture) and
keeps the check beside it, tied to the segment by a digest of its packets. The coordinator then
proves the mux from packets alone (every packet of every segment in the output, in order) and
takes the pictures from the checks, instead of decoding the whole output (`full` still does).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ute import compare, facts
from ute.errors import ProbeError, VerifyError
from ute.plan import Chunk, segment_name
from ute.probe import SourceInfo

log = logging.getLogger(__name__)

# Luma PSNR below this is no encode of the frame at all (grey garbage scored about 12 dB);
# real encodes, even at crf 51, score well above it.
PICTURE_FLOOR_DB = 18.0
# An output frame that is this much closer to another sampled source frame than to its own
# is in the wrong place; the samples of this many chunks on either side are looked at.
MISPLACED_MARGIN_DB = 1.0
NEIGHBOUR_CHUNKS = 3
# Pictures are compared at about this width (block means): enough to tell garbage and wrong
# places apart, and a 2-hour film's samples stay within a few tens of megabytes.
COMPARED_WIDTH = 160


@dataclass(frozen=True)
class Verified:
    frames: int
    duration_seconds: float
    size: int


@dataclass(frozen=True)
class PictureScore:
    position: int  # frame number in presentation order
    chunk: int
    own_db: float  # against the source frame at the same place
    best_other_db: float  # against the most alike other sampled source frame
    best_other_position: int


def shrink(picture: Any) -> Any:
    """A grey picture reduced by whole blocks to about COMPARED_WIDTH across (block means, rounded
    to 8 bits: a 2-hour film's 1,438 samples are 21 MB a side, and held while it encodes)."""
    import numpy

    factor = max(1, picture.shape[1] // COMPARED_WIDTH)
    height, width = (picture.shape[0] // factor) * factor, (picture.shape[1] // factor) * factor
    blocks = picture[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return numpy.rint(blocks.mean(axis=(1, 3))).astype(numpy.uint8)


def cropped_shrink(crop: str | None) -> Callable[[Any], Any]:
    if not crop:
        return shrink
    width, height, x, y = (int(part) for part in crop.split(":"))
    return lambda picture: shrink(picture[y : y + height, x : x + width])


def psnr(first: Any, second: Any) -> float:
    """Peak signal-to-noise ratio of two 8-bit grey pictures (or their shrunk forms), in dB
    (inf when equal)."""
    import numpy  # here, not at the top: the CLI imports this module and most commands need no numpy

    error = numpy.mean((first.astype(numpy.float64) - second.astype(numpy.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255**2 / error)


def picture_differences(scores: Sequence[PictureScore]) -> list[compare.Difference]:
    """Pure: which sampled frames are no encode of their own source frame."""
    found = []
    for score in scores:
        where = f"frame {score.position} (chunk {score.chunk})"
        if score.own_db < PICTURE_FLOOR_DB:
            found.append(compare.Difference(where, "picture PSNR (dB)", f">= {PICTURE_FLOOR_DB}",
                                            round(score.own_db, 1)))  # fmt: skip
        elif score.best_other_db > score.own_db + MISPLACED_MARGIN_DB:
            found.append(compare.Difference(where, "picture", f"frame {score.position}",
                                            f"frame {score.best_other_position}"))  # fmt: skip
    return found


def sample_positions(chunks: Sequence[Chunk]) -> dict[int, int]:
    """The first and last frame of every chunk, each with its chunk's index."""
    return {position: chunk.index for chunk in chunks for position in (chunk.start, chunk.end - 1)}


def score_pictures(
    source_pictures: Mapping[int, Any], output_pictures: Mapping[int, Any], samples: Mapping[int, int]
) -> list[PictureScore]:
    """Each output sample against its own source frame and against the samples of the chunks
    around it whose pictures differ from it."""
    scores = []
    for position, chunk in sorted(samples.items()):
        mine, its = source_pictures[position], output_pictures[position]
        best_db, best_position = -math.inf, position
        for other, picture in source_pictures.items():
            if abs(samples[other] - chunk) > NEIGHBOUR_CHUNKS or other == position:
                continue
            if picture.shape != mine.shape or (picture == mine).all():
                continue
            other_db = psnr(its, picture)
            if other_db > best_db:
                best_db, best_position = other_db, other
        scores.append(PictureScore(position, chunk, psnr(its, mine), best_db, best_position))
    return scores


@dataclass(frozen=True)
class SourceSamples:
    """What the verifier reads of the source: its facts, and the pictures of each chunk's first
    and last frame (read while the chunks encode, so that the end of a run need not)."""

    facts: facts.MediaFacts
    pictures: Mapping[int, Any]


def sample_source(source: SourceInfo, chunks: Sequence[Chunk], crop: str | None) -> SourceSamples:
    source_facts = facts.read_facts(source.path)
    positions = sorted(sample_positions(chunks))
    return SourceSamples(source_facts, _source_pictures(source, source_facts.frame_pts, positions, crop))


def _source_pictures(
    info: SourceInfo, pts_list: Sequence[int], positions: Sequence[int], crop: str | None
) -> dict[int, Any]:
    """The source's frames at those positions, each decoded from the keyframe before it."""
    wanted: dict[int, int | None] = {}
    for position in positions:
        keyframe = info.keyframes[bisect.bisect_right(info.keyframes, position) - 1]
        wanted[pts_list[position]] = None if keyframe == 0 else info.keyframe_pts_at(keyframe)
    by_pts = facts.pictures_at(info.path, info.video_index, wanted, cropped_shrink(crop))
    return {position: by_pts[pts_list[position]] for position in positions if pts_list[position] in by_pts}


def verify_output(
    source: SourceInfo, source_facts: facts.MediaFacts, chunks: Sequence[Chunk], output: Path, *,
    crop: str | None = None, work_dir: Path | None = None, full: bool = False,
    source_pictures: Mapping[int, Any] | None = None,
) -> Verified:  # fmt: skip
    """Raise VerifyError naming what differs between output and source; nothing is changed. With
    the work_dir of the segments the output was muxed from (and not full), the output is proved
    from their packets and checks instead of decoded; source_pictures: sample_source's, if read."""
    name = output.name
    try:
        output_facts = facts.read_facts(output)
    except ProbeError as error:
        raise VerifyError(f"output {name} is unreadable: {error}") from error
    width, height = (source_facts.picture.width, source_facts.picture.height)
    if crop:
        width, height = (int(part) for part in crop.split(":")[:2])
    found = compare.differences(source_facts, output_facts, compare.Expected(width, height))

    samples = sample_positions(chunks)
    video_index = output_facts.video_index
    try:
        if work_dir is None or full:
            decoded, output_pictures = facts.decode_all(output, video_index, set(samples), shrink)
        else:
            decoded, output_pictures, unlike = _from_segments(output, video_index, chunks, work_dir)
            found += unlike
    except ProbeError as error:
        raise VerifyError(f"output {name} does not decode: {error}") from error
    if decoded != source.frame_count:
        found.insert(0, compare.Difference("video", "decoded frames", source.frame_count, decoded))
    elif not found:
        if source_pictures is None:
            source_pictures = _source_pictures(source, source_facts.frame_pts, sorted(samples), crop)
        missing = sorted(set(samples) - set(source_pictures))
        if missing:
            raise VerifyError(f"{Path(source.path).name}: frames {missing[:5]} of the source do not decode "
                              "after a seek; cannot compare pictures")  # fmt: skip
        found += picture_differences(score_pictures(source_pictures, output_pictures, samples))
    if found:
        raise VerifyError(f"output {name} differs from its source: {compare.summary(found)}")
    return Verified(decoded, output_facts.duration_seconds, output.stat().st_size)


CHECK_SUFFIX = ".check.npz"


@dataclass(frozen=True)
class SegmentCheck:
    """What the worker found decoding its segment: frames that decode, the first and last as the
    verifier compares them, and the digest of the packets it decoded."""

    decoded: int
    first: Any
    last: Any
    packets: bytes


def packets_digest(packet_digests: Sequence[bytes]) -> bytes:
    return hashlib.blake2b(b"".join(packet_digests), digest_size=16).digest()


def check_segment(
    segment: Path, frames: int, packet_digests: Sequence[bytes], threads: int | None = None
) -> SegmentCheck:
    """Decode a segment (its only video stream), whose packets' digests the caller has read, with
    threads (None: the decoder's choice): raises ProbeError where a frame does not decode."""
    decoded, pictures = facts.decode_all(segment, 0, {0, frames - 1}, shrink, threads)
    return SegmentCheck(decoded, pictures.get(0), pictures.get(frames - 1), packets_digest(packet_digests))


def check_path(segment: Path) -> Path:
    return segment.with_name(segment.name + CHECK_SUFFIX)


def into_place(part: Path, check_part: Path, segment: Path) -> dict[Path, Path]:
    """The renames that commit a segment, in order: its check first, so that no committed segment
    is ever without the check that describes it."""
    return {check_part: check_path(segment), part: segment}


def save_check(check: SegmentCheck, path: Path) -> None:
    """Write the check to path (the worker renames it beside the segment when it commits)."""
    import numpy

    with path.open("wb") as file:
        numpy.savez(file, decoded=check.decoded, first=check.first, last=check.last,
                    packets=numpy.frombuffer(check.packets, dtype=numpy.uint8))  # fmt: skip
        file.flush()
        os.fsync(file.fileno())


def load_check(path: Path) -> SegmentCheck | None:
    """The check kept beside a segment, or None when there is none or it does not read."""
    import numpy

    try:
        with numpy.load(path, allow_pickle=False) as data:
            return SegmentCheck(int(data["decoded"]), data["first"], data["last"], data["packets"].tobytes())
    except (OSError, ValueError, KeyError):
        return None


def _from_segments(output: Path, video_index: int, chunks: Sequence[Chunk], work_dir: Path
                   ) -> tuple[int, dict[int, Any], list[compare.Difference]]:  # fmt: skip
    """The output's decoded frame count and sample pictures from its segments' checks, and how
    its video packets differ from theirs: reading packets, not decoding them. A segment whose
    check is missing or is not of it (replaced since) is decoded here."""
    expected: list[bytes] = []
    decoded, pictures = 0, {}
    for chunk in chunks:
        segment = work_dir / segment_name(chunk.index)
        digests = facts.packet_digests(segment, 0)
        check = load_check(check_path(segment))
        if check is None or check.packets != packets_digest(digests):
            log.info("%s: no check of its own beside it; decoding it here", segment.name)
            check = check_segment(segment, chunk.frames, digests)
        expected += digests
        decoded += check.decoded
        pictures.update({chunk.start: check.first, chunk.end - 1: check.last})
    muxed = facts.packet_digests(output, video_index)
    if muxed == expected:
        return decoded, pictures, []
    first = next((n for n, (a, b) in enumerate(zip(muxed, expected, strict=False)) if a != b),
                 min(len(muxed), len(expected)))  # fmt: skip
    where = f"packets as muxed from the segments (from packet {first})"
    return decoded, pictures, [compare.Difference("video", where, len(expected), len(muxed))]
