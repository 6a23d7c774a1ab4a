"""A file's chunk map for the dashboard: one cell per chunk, in the state a user would name it,
with the worker that has (or had) it. Pure: snapshot gives it what its look at the chunks read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rq.job import Job, JobStatus

from ute.progress import PUT_DOWN_STATES
from ute.submit import retry_delay


class CellState(StrEnum):
    WAITING = "waiting"  # no job: not submitted yet, or held back (a pause, a full disk)
    QUEUED = "queued"
    REQUEUED = "requeued"  # queued again: its encoder vanished, or it failed and will be tried again
    ENCODING = "encoding"
    DONE = "done"
    FAILED = "failed"  # for good


@dataclass(frozen=True)
class JobFacts:
    """What the map needs of a running or failed chunk's job."""

    frames_done: int
    worker: str | None
    retry_pending: bool  # failed, and the monitor tries it again after a delay


@dataclass(frozen=True)
class ChunkCell:
    index: int
    state: CellState
    frames: int
    frames_done: int
    worker: str | None  # the worker encoding it, that failed it, or that encoded its segment
    tries: int  # attempts after the first
    bytes: int | None  # the committed segment's size


def cells(
    chunk_frames: Sequence[int], statuses: Sequence[JobStatus | None], generations: Mapping[int, int],
    jobs: Mapping[int, JobFacts], segments: Mapping[int, Mapping[str, Any]], *, all_done: bool = False,
) -> list[ChunkCell]:  # fmt: skip
    """The map from each chunk's job status, its generation (a new one each time it was taken
    back), the facts of running and failed jobs and the committed segments; all_done for a file
    past encoding, whose jobs may be gone."""
    result = []
    for index, (frames, status) in enumerate(zip(chunk_frames, statuses, strict=True)):
        tries = generations.get(index, 0)
        job = jobs.get(index)
        segment = segments.get(index, {})
        cell_state = CellState.DONE if all_done else _cell_state(status, tries, job)
        frames_done = {CellState.DONE: frames, CellState.ENCODING: min(frames, job.frames_done if job else 0)
                       }.get(cell_state, 0)  # fmt: skip
        running_or_failed = job is not None and cell_state in (CellState.ENCODING, CellState.FAILED)
        worker = job.worker if job and running_or_failed else segment.get("worker")
        result.append(ChunkCell(index, cell_state, frames, frames_done, worker, tries, segment.get("bytes")))
    return result


def _cell_state(status: JobStatus | None, tries: int, job: JobFacts | None) -> CellState:
    if status == JobStatus.FINISHED:
        return CellState.DONE
    if status == JobStatus.STARTED:
        return CellState.ENCODING
    if status == JobStatus.FAILED:
        return CellState.REQUEUED if job is not None and job.retry_pending else CellState.FAILED
    if status is None or status in PUT_DOWN_STATES:
        return CellState.WAITING
    return CellState.REQUEUED if tries > 0 else CellState.QUEUED  # queued, scheduled, deferred


def job_facts(job: Job) -> JobFacts:
    """What the map needs of a running or failed chunk's rq job."""
    failed = job.get_status(refresh=False) == JobStatus.FAILED
    return JobFacts(int(job.meta.get("frames_done", 0)), job.worker_name,
                    failed and retry_delay(job) is not None)  # fmt: skip
