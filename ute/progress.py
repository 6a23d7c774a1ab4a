"""Reads how far a file's chunk jobs have got, from rq's job records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ute.plan import Chunk

BROKEN_STATES = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


@dataclass(frozen=True)
class ChunkProgress:
    chunks_total: int
    chunks_done: int
    frames_total: int
    frames_done: int  # finished chunks plus what running encoders report
    fps: float  # sum over running encoders
    failure: str | None  # why a chunk failed for good, if one did

    @property
    def complete(self) -> bool:
        return self.chunks_done == self.chunks_total


def read_progress(
    connection: redis.Redis, job_ids: Sequence[str], chunks: Sequence[Chunk]
) -> ChunkProgress:
    jobs = Job.fetch_many(list(job_ids), connection=connection, serializer=JSONSerializer)
    chunks_done, frames_done, fps, failure = 0, 0, 0.0, None
    for job, chunk in zip(jobs, chunks, strict=True):
        status = job.get_status(refresh=False) if job else None
        if status == JobStatus.FINISHED:
            chunks_done += 1
            frames_done += chunk.frames
        elif status == JobStatus.STARTED and job is not None:
            frames_done += min(chunk.frames, int(job.meta.get("frames_done", 0)))
            fps += float(job.meta.get("fps", 0.0))
        elif (status in BROKEN_STATES or status is None) and failure is None:
            failure = failure_reason(job, chunk)
    return ChunkProgress(len(chunks), chunks_done, sum(c.frames for c in chunks), frames_done,
                         fps, failure)  # fmt: skip


def failure_reason(job: Job | None, chunk: Chunk) -> str:
    """The last line of the job's exception, without the exception's class name."""
    if job is None:
        return f"the job for chunk {chunk.index} vanished from Redis"
    result = job.latest_result()
    lines = [line for line in (result.exc_string or "" if result else "").splitlines() if line.strip()]
    if not lines:
        return f"chunk {chunk.index} {job.get_status(refresh=False)}"
    kind, separator, message = lines[-1].partition(": ")
    return message if separator and (kind.endswith("Error") or kind.endswith("Exception")) else lines[-1]
