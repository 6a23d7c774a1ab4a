"""Reads how far a file's chunk jobs have got, from rq's job records in Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import redis
from rq.job import Job, JobStatus

from ute import state
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


@dataclass(frozen=True)
class ChunkLook:
    """What one look at a file's chunks found: its progress; for the monitor's sweep the jobs of
    running and failed chunks and the ids of queued ones; the chunks it found finished; for the
    dashboard's chunk map every chunk's status and the jobs of running and failed ones by index."""

    progress: ChunkProgress
    jobs: list[Job]
    queued: list[str]
    finished: list[int]
    statuses: list[JobStatus | None]
    details: dict[int, Job]


def look_at_chunks(
    connection: redis.Redis, work_id: str, chunks: Sequence[Chunk], done: AbstractSet[int] = frozenset()
) -> ChunkLook:
    """How far a file's chunks have got, for little however long the file: the chunks in done
    (found finished before) are not read again; of the others one status field each, and whole
    job records only of running and failed chunks."""
    unfinished = [chunk.index for chunk in chunks if chunk.index not in done]
    seen = dict(zip(unfinished, state.current_chunk_statuses(connection, work_id, unfinished), strict=True))
    detailed = [(index, job_id) for index, (job_id, status) in seen.items() if status in DETAILED_STATES]
    jobs = state.fetch_jobs(connection, [job_id for _, job_id in detailed])
    details = {index: job for (index, _), job in zip(detailed, jobs, strict=True) if job is not None}
    statuses = [JobStatus.FINISHED if chunk.index in done else seen[chunk.index][1] for chunk in chunks]
    return ChunkLook(
        read_progress(chunks, statuses, details), list(details.values()),
        queued=[job_id for job_id, status in seen.values() if status == JobStatus.QUEUED],
        finished=[index for index, (_, status) in seen.items() if status == JobStatus.FINISHED],
        statuses=statuses, details=details,
    )  # fmt: skip


def failure_reason(job: Job, chunk: Chunk) -> str:
    """The last line of the job's exception, without the exception's class name."""
    return failure_message(job) or f"chunk {chunk.index} {job.get_status(refresh=False)}"
