"""Turns a plan into rq jobs. Job ids come from the file and the chunk, so submitting twice is safe."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue
from rq.job import Job, JobStatus

from ute import state
from ute.settings import DEFAULT_CHUNK_TIMEOUT_SECONDS, chunk_retry_delays, log_ttl_seconds

if TYPE_CHECKING:
    from ute.jobs import ChunkSpec, FileSpec

# By name, as rq stores it: importing ute.jobs here would load the encoder's modules (PyAV) into
# every reader of job states (`ute status`).
ENCODE_CHUNK_FUNCTION = "ute.jobs.encode_chunk"

ACTIVE_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.FINISHED, JobStatus.DEFERRED,
                 JobStatus.SCHEDULED}  # fmt: skip


def submit_chunks(
    connection: redis.Redis, file: FileSpec, specs: Sequence[ChunkSpec], queue_name: str = state.QUEUE_LOW
) -> list[str]:
    """Describe the file in Redis, then enqueue each chunk unless its job is queued, running or done."""
    if not specs:
        return []
    work_id = specs[0].work_id
    state.save_file_spec(connection, work_id, file.to_json())
    queue = state.queue(queue_name, connection)
    job_ids = state.current_chunk_job_ids(connection, work_id, [spec.index for spec in specs])
    existing = state.fetch_jobs(connection, job_ids)
    to_enqueue = [
        _job_data(queue, spec, job_id)
        for spec, job_id, job in zip(specs, job_ids, existing, strict=True)
        if job is None or job.get_status(refresh=False) not in ACTIVE_STATES
    ]
    if to_enqueue:
        queue.enqueue_many(to_enqueue)
    return job_ids


def requeue_at_front(connection: redis.Redis, job: Job, *, failed: bool = False) -> bool:
    """Put a chunk back at the front of its file's queue as a fresh job (a new generation), carrying
    over how often it was requeued and, if it failed, on which workers. False when the job had
    already moved on (taken, finished, or requeued by someone else) since the caller looked."""
    spec = job.args[0]
    meta = {
        "requeues": int(job.meta.get("requeues", 0)) + 1,
        "failures": int(job.meta.get("failures", 0)) + int(failed),
        "failed_on": [*job.meta.get("failed_on", []), *([job.worker_name] if failed else [])],
        "errors": [*job.meta.get("errors", []), *([error_signature(job)] if failed else [])],
    }
    # The file's queue now: `ute move` may have moved it since this job was queued.
    queue_name = state.file_queue(connection, state.file_id_of(spec["work_id"])) or job.origin
    queue = state.queue(queue_name, connection)
    replacement = state.replace_chunk_job(
        connection, job, lambda new_id: queue.create_job(**_job_kwargs(spec, new_id), meta=meta)
    )
    return replacement is not None


def retry_delay(job: Job) -> float | None:
    """Seconds to wait before a failed chunk is tried again, or None when it has failed too often
    or the same way on two workers (a failure that no retry will mend)."""
    failures = int(job.meta.get("failures", 0))  # before this one
    delays = chunk_retry_delays()
    if failures >= len(delays) or repeats_earlier_failure(job):
        return None
    return delays[failures]


def repeats_earlier_failure(job: Job) -> bool:
    """The same error, on another worker, as an earlier attempt at this chunk."""
    earlier = job.meta.get("errors", [])
    failed_on = job.meta.get("failed_on", [])
    if not earlier:
        return False
    signature = error_signature(job)
    return any(error == signature and worker != job.worker_name
               for error, worker in zip(earlier, failed_on, strict=False))  # fmt: skip


def failure_message(job: Job) -> str:
    """The last line of the job's exception, without the exception's class name."""
    result = job.latest_result()
    lines = [line for line in (result.exc_string or "" if result else "").splitlines() if line.strip()]
    if not lines:
        return ""
    kind, separator, message = lines[-1].partition(": ")
    return message if separator and (kind.endswith("Error") or kind.endswith("Exception")) else lines[-1]


_ADDRESS = re.compile(r"0x[0-9a-f]+")


def error_signature(job: Job) -> str:
    """A failure's message with what differs between two runs of the same failure (addresses in
    ffmpeg's log prefixes) taken out."""
    return _ADDRESS.sub("0x", failure_message(job))


def _job_kwargs(spec: dict[str, Any], job_id: str) -> dict[str, Any]:
    return {
        "func": ENCODE_CHUNK_FUNCTION,
        "args": (spec,),
        "job_id": job_id,
        # Descriptions are shown unescaped by rq-dashboard: never put a file name here. The id is
        # the one `ute status` shows, so that the dashboard leads back to the file.
        "description": f"encode chunk {spec['index']} of file {state.file_id_of(spec['work_id'])}",
        "timeout": DEFAULT_CHUNK_TIMEOUT_SECONDS,
        "result_ttl": log_ttl_seconds(),  # the result holds the chunk's log
        "failure_ttl": log_ttl_seconds(),
    }


def _job_data(queue: Queue, spec: ChunkSpec, job_id: str) -> Any:
    kwargs = _job_kwargs(spec.to_json(), job_id)
    return queue.prepare_data(kwargs.pop("func"), **kwargs)


def clear_chunks(connection: redis.Redis, work_id: str, chunk_count: int) -> None:
    """Drop whatever jobs an earlier run left for this file; segments on disk are kept."""
    jobs = state.current_chunk_jobs(connection, work_id, chunk_count)
    state.delete_jobs(connection, [job for job in jobs if job is not None])
    state.forget_chunks(connection, work_id)
