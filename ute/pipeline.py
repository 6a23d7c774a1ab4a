"""The steps one file goes through, shared by `ute encode` and `ute serve`: prepare, finalize."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import redis

from ute import concat, encodable, facts, plan, probe, state, submit, tools, verify, x265_params
from ute.errors import EncodeError
from ute.jobs import ChunkSpec, FileSpec
from ute.names import NAME_MAX_BYTES, fitted
from ute.probe import SourceInfo
from ute.progress import ChunkLook, ChunkProgress, look_at_chunks
from ute.settings import EncodeSettings
from ute.verify import Verified

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedFile:
    """A probed and planned file with its id, work folder and one job spec per chunk."""

    info: SourceInfo
    settings: EncodeSettings
    chunks: tuple[plan.Chunk, ...]
    file_id: str  # the one id users see (state.fingerprint)
    work_id: str  # its chunks' namespace, `<file_id>-<settings digest>` (state.work_id)
    work_dir: Path
    specs: tuple[ChunkSpec, ...]

    @property
    def name(self) -> str:
        return Path(self.info.path).name

    @property
    def file_spec(self) -> FileSpec:
        return FileSpec(self.info.path, self.info.video_index, str(self.work_dir), self.settings.to_json())


def plan_for(info: SourceInfo, settings: EncodeSettings) -> list[plan.Chunk]:
    bounds = plan.ChunkBounds.around(_chunk_target(info, settings))
    return plan.plan_chunks(info.frame_count, info.keyframes, bounds)


def _chunk_target(info: SourceInfo, settings: EncodeSettings) -> int:
    return plan.target_frames(info.fps, settings.chunk_frames, info.frame_count)


def _plan_digest_input(info: SourceInfo, settings: EncodeSettings) -> str:
    """What the work id is made from besides the file: the settings, and a short file's own chunk
    length, so that its segments are never taken for those of another plan (short files were cut
    into 10 s chunks under the same settings before; long files' work ids are what they were)."""
    settings_json = json.dumps(settings.to_json())
    target = _chunk_target(info, settings)
    if target == plan.target_frames(info.fps, settings.chunk_frames, sys.maxsize):
        return settings_json
    return f"{settings_json}\nchunk target {target}"


def prepare(info: SourceInfo, settings: EncodeSettings, work_root: Path) -> PreparedFile:
    """Plan the file; its id changes with its path, size and mtime, its work id (and so its work
    folder) with its settings too. EncodeError if it can never be encoded as it is."""
    refused = encodable.refusal(info, settings)
    if refused:
        raise EncodeError(refused)
    x265_params.check_with_encoder(tools.ffmpeg(), settings)  # ffmpeg only warns of bad ones
    chunks = plan_for(info, settings)
    file_id = state.fingerprint(info.path, info.size, info.mtime_ns)
    work_id = state.work_id(file_id, _plan_digest_input(info, settings))
    return PreparedFile(info, settings, tuple(chunks), file_id, work_id, work_root / work_id,
                        tuple(chunk_specs(info, chunks, work_id)))  # fmt: skip


def chunk_specs(info: SourceInfo, chunks: Sequence[plan.Chunk], work_id: str) -> list[ChunkSpec]:
    specs = []
    for chunk in chunks:
        start_pts = info.keyframe_pts_at(chunk.start)
        # Some decoders give garbage after any seek, even to the start: the first chunk reads on.
        seek = None if chunk.start == 0 else info.microseconds_from_start(start_pts)
        specs.append(ChunkSpec(work_id, chunk.index, chunk.start, chunk.frames, start_pts, seek))
    return specs


def check_chunks(
    connection: redis.Redis, prepared: PreparedFile, queue_name: str, done: set[int] | None = None
) -> ChunkLook:
    """One look at a file's chunks (progress.look_at_chunks): queue again those without a job
    (lost by Redis, or held back while the file or the farm was paused). done holds the chunks
    found finished before, and this look adds to it; the disk says at the end whether they still
    are."""
    done = set() if done is None else done
    # A Redis restart replays only what reached its append-only file.
    state.save_file_spec(connection, prepared.work_id, prepared.file_spec.to_json(), only_if_missing=True)
    look = look_at_chunks(connection, prepared.work_id, prepared.chunks, done)
    done.update(look.finished)
    progress = look.progress
    if progress.missing:
        log.info("%s: queueing %d chunks that have no job in Redis", prepared.name, len(progress.missing))
        submit.submit_chunks(connection, prepared.file_spec, [prepared.specs[i] for i in progress.missing],
                             queue_name)  # fmt: skip
    if progress.complete:
        progress = _requeue_lost_segments(connection, prepared, progress, done)
    return dataclasses.replace(look, progress=progress)


def lost_segments(prepared: PreparedFile) -> list[plan.Chunk]:
    """Chunks whose job says done but whose segment is gone or short (deleted, a disk fault):
    the disk, not Redis, says what is done."""
    segments = [(chunk, prepared.work_dir / plan.segment_name(chunk.index)) for chunk in prepared.chunks]
    return [chunk for chunk, segment in segments if probe.count_frames(segment) != chunk.frames]


def _requeue_lost_segments(
    connection: redis.Redis, prepared: PreparedFile, progress: ChunkProgress, done: set[int]
) -> ChunkProgress:
    lost = lost_segments(prepared)
    if not lost:
        return progress
    numbers = ", ".join(str(chunk.index) for chunk in lost)
    log.warning("%s: chunks %s are done in Redis but their segments are missing or broken on disk; "
                "encoding them again", prepared.name, numbers)  # fmt: skip
    job_ids = state.current_chunk_job_ids(connection, prepared.work_id, [chunk.index for chunk in lost])
    for chunk, job in zip(lost, state.fetch_jobs(connection, job_ids), strict=True):
        done.discard(chunk.index)
        if job is not None:
            submit.requeue_at_front(connection, job)
    return dataclasses.replace(progress, chunks_done=progress.chunks_done - len(lost),
                               frames_done=progress.frames_done - sum(chunk.frames for chunk in lost))



PARTIAL_SUFFIX = ".part"
# A work id, or an older UTE's 16-hex file id, whose partials are just as stale.
_PARTIAL_OUTPUT = re.compile(r"^\..+\.[0-9a-f]{16}(-[0-9a-f]{8})?\.part$")


def partial_name(output_name: str, work_id: str) -> str:
    """The hidden name an output is muxed under: `.<name>.<work id>.part`, cut to fit."""
    return "." + fitted(output_name, f".{work_id}{PARTIAL_SUFFIX}", NAME_MAX_BYTES - 1)


def remove_stale_partials(folder: Path) -> list[Path]:
    """Drop the hidden half-muxed outputs a killed run left behind (only UTE's own names)."""
    stale = [path for path in folder.glob(f".*{PARTIAL_SUFFIX}") if _PARTIAL_OUTPUT.match(path.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def sample_source(prepared: PreparedFile) -> verify.SourceSamples:
    """What the verifier reads of the source, to read while the chunks encode."""
    return verify.sample_source(prepared.info, prepared.chunks, prepared.settings.crop)


def finalize(
    prepared: PreparedFile, output: Path, before_rename: Callable[[Verified], None] | None = None, *,
    replace: bool = False, full_verify: bool = False,
    samples: Future[verify.SourceSamples] | None = None,
) -> Verified:  # fmt: skip
    """Mux under a hidden name, verify (from the segments' packets and checks, or decoding the
    whole output with full_verify), and only then rename into place; never a bad output, and
    never over another file unless `replace`. before_rename may record the verified output
    first, so that a crash right after the rename cannot go unnoticed. samples: the source's, read
    while the chunks encoded (else they are read here)."""
    partial = output.with_name(partial_name(output.name, prepared.work_id))
    try:
        started = time.monotonic()
        sampled = samples.result() if samples is not None else None
        source = sampled.facts if sampled else facts.read_facts(prepared.info.path)
        concat.mux(prepared.info, source, prepared.chunks, prepared.work_dir, partial)
        muxed = time.monotonic()
        verified = verify.verify_output(prepared.info, source, prepared.chunks, partial,
                                        crop=prepared.settings.crop, work_dir=prepared.work_dir,
                                        full=full_verify,
                                        source_pictures=sampled.pictures if sampled else None)  # fmt: skip
        how = "decoding all of it" if full_verify else "from its segments"
        log.info("%s: muxed in %.1f s, verified in %.1f s (%s)", output.name, muxed - started,
                 time.monotonic() - muxed, how)  # fmt: skip
        if before_rename:
            before_rename(verified)
        if not replace:
            _claim(output)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return verified


def _claim(output: Path) -> None:
    """Take the output's name, atomically, or fail if anything has it: the rename then replaces
    only this empty placeholder (hard links would do too, but not on every share)."""
    try:
        os.close(os.open(output, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError as error:
        raise EncodeError(f"{output}: another file took this name while this one was encoded; "
                          "nothing was written over it") from error
