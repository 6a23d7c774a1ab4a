"""Reads how far a file's chunk jobs have got, from rq's job records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rq.job import Job, JobStatus

from ute.plan import Chunk
from ute.submit import failure_message, retry_delay

# A chunk stopped or cancelled by someone (`ute cancel` of an earlier run, whose stop reached the
# worker after the jobs were cleared; rq-dashboard) did not fail: it is queued again.
PUT_DOWN_STATES = (JobStatus.STOPPED, JobStatus.CANCELED)


@dataclass(frozen=True)
class ChunkProgress:
    chunks_total: int
    chunks_done: int
    frames_total: int
    frames_done: int  # finished chunks plus what running encoders report
    fps: float  # sum over running encoders
    failure: str | None  # why a chunk failed for good, if one did
    missing: tuple[int, ...] = ()  # chunks whose job vanished (Redis lost it): submit them again

    @property
    def complete(self) -> bool:
        return self.chunks_done == self.chunks_total


# Whose whole record a look needs: progress and speed, or why it failed. The others need only
# their status.
DETAILED_STATES = (JobStatus.STARTED, JobStatus.FAILED)


def read_progress(
    chunks: Sequence[Chunk], statuses: Sequence[JobStatus | None], details: Mapping[int, Job]
) -> ChunkProgress:  # fmt: skip
    """How far a file's chunks have got, from each chunk's job status and, for chunks in
    DETAILED_STATES, its job (by chunk index)."""
    chunks_done, frames_done, fps, failure = 0, 0, 0.0, None
    missing: list[int] = []
    for chunk, status in zip(chunks, statuses, strict=True):
        job = details.get(chunk.index)
        if status == JobStatus.FINISHED:
            chunks_done += 1
            frames_done += chunk.frames
        elif status == JobStatus.STARTED and job is not None:
            frames_done += min(chunk.frames, int(job.meta.get("frames_done", 0)))
            fps += float(job.meta.get("fps", 0.0))
        elif status is None or status in PUT_DOWN_STATES:
            missing.append(chunk.index)
        elif status == JobStatus.FAILED and job is not None and retry_delay(job) is not None:
            pass  # the monitor tries it again after its delay
        elif status == JobStatus.FAILED and failure is None and job is not None:
            tries = int(job.meta.get("failures", 0)) + 1
            failure = failure_reason(job, chunk) + (f" (failed {tries} times)" if tries > 1 else "")
    return ChunkProgress(len(chunks), chunks_done, sum(c.frames for c in chunks), frames_done,
                         fps, failure, tuple(missing))  # fmt: skip


def progress_of_jobs(jobs: Sequence[Job | None], chunks: Sequence[Chunk]) -> ChunkProgress:
    """read_progress from whole job records (state.current_chunk_jobs)."""
    statuses = [job.get_status(refresh=False) if job else None for job in jobs]
    return read_progress(chunks, statuses, {index: job for index, job in enumerate(jobs) if job})


def failure_reason(job: Job, chunk: Chunk) -> str:
    """The last line of the job's exception, without the exception's class name."""
    return failure_message(job) or f"chunk {chunk.index} {job.get_status(refresh=False)}"
