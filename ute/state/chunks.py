"""A file's ids, its description for workers, its chunks' rq jobs and their generations, the
segments they committed, heartbeats and the commit fence."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import LockError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from ute.state.base import KEY_PREFIX, queue

FILE_ID_LENGTH = 16
SETTINGS_DIGEST_LENGTH = 8


def fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """A file's one id (16 hex digits), the id every command and message shows: the same while
    its path, size and modification time are."""
    data = f"{path}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()[:FILE_ID_LENGTH]


def work_id(file_id: str, settings_json: str) -> str:
    """The namespace of one encode of a file, `<file id>-<8 hex of its settings>`: its work folder,
    chunk jobs and segments. New settings get a new one, so no segment of other settings is reused."""
    digest = hashlib.sha256(settings_json.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{file_id}-{digest[:SETTINGS_DIGEST_LENGTH]}"


def file_id_of(work_id: str) -> str:
    """The file's one id in a work id."""
    return work_id[:FILE_ID_LENGTH]


FILE_SPEC_TTL_SECONDS = 7 * 24 * 3600


def _file_spec_key(work_id: str) -> str:
    return f"{KEY_PREFIX}filespec:{work_id}"


def save_file_spec(
    connection: redis.Redis, work_id: str, spec: dict[str, Any], *, only_if_missing: bool = False
) -> None:
    connection.set(_file_spec_key(work_id), json.dumps(spec), ex=FILE_SPEC_TTL_SECONDS, nx=only_if_missing)


def load_file_spec(connection: redis.Redis, work_id: str) -> dict[str, Any] | None:
    raw = connection.get(_file_spec_key(work_id))
    return json.loads(raw) if raw else None


def chunk_job_id(work_id: str, chunk_index: int, generation: int = 0) -> str:
    """A chunk gets a new job (generation) each time it is taken from an encoder that vanished,
    so a late report from the old attempt can never land on the new attempt's job record."""
    base = f"ute-{work_id}-chunk-{chunk_index:05d}"
    return f"{base}-g{generation}" if generation else base


def file_id_of_chunk_job(job_id: str) -> str | None:
    """The file's id in a chunk job's id (chunk_job_id's); None for any other job's."""
    prefix, _, rest = job_id.partition("-")
    return file_id_of(rest) if prefix == "ute" and "-chunk-" in rest else None


def _generations_key(work_id: str) -> str:
    return f"{KEY_PREFIX}generations:{work_id}"


def chunk_generations(connection: redis.Redis, work_id: str) -> dict[int, int]:
    raw = connection.hgetall(_generations_key(work_id))
    return {int(index): int(generation) for index, generation in raw.items()}


def current_chunk_job_ids(connection: redis.Redis, work_id: str, indices: Iterable[int]) -> list[str]:
    """The job ids of these chunks' newest generations."""
    generations = chunk_generations(connection, work_id)
    return [chunk_job_id(work_id, index, generations.get(index, 0)) for index in indices]


def current_chunk_statuses(
    connection: redis.Redis, work_id: str, indices: Iterable[int]
) -> list[tuple[str, JobStatus | None]]:  # fmt: skip
    """Each chunk's newest job id and rq status (None where Redis has no job): one field per
    chunk, not its whole record, for the coordinator's poll."""
    job_ids = current_chunk_job_ids(connection, work_id, indices)
    if not job_ids:
        return []
    keys = [Job.key_for(job_id) for job_id in job_ids]
    try:  # one command for them all: a pipeline of one HGET per chunk costs the client most of a look
        raws = connection.register_script(_STATUS_OF_EACH)(keys=keys)
    except redis.exceptions.ResponseError:  # a Redis that runs no scripts (ACLs, some hosted ones)
        pipe = connection.pipeline(transaction=False)  # reads only
        for key in keys:
            pipe.hget(key, "status")
        raws = pipe.execute()
    return [(job_id, JobStatus(raw.decode()) if raw else None)
            for job_id, raw in zip(job_ids, raws, strict=True)]  # fmt: skip


_STATUS_OF_EACH = """
local statuses = {}
for position, key in ipairs(KEYS) do
  statuses[position] = redis.call('HGET', key, 'status') or false
end
return statuses
"""


def current_chunk_jobs(connection: redis.Redis, work_id: str, chunk_count: int) -> list[Job | None]:
    """The jobs of a file's chunks (None where Redis has none), in chunk order."""
    return fetch_jobs(connection, current_chunk_job_ids(connection, work_id, range(chunk_count)))


def fetch_jobs(connection: redis.Redis, job_ids: Sequence[str]) -> list[Job | None]:
    """Whole job records, in one round trip (None for a job Redis does not have). A worker that
    starts or ends a job deleted under it (a paused file's chunk taken off the queue as the worker
    took it) writes a few fields of it back: such a record is no job either, not an error."""
    try:
        return Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:  # rq's word for a record without the job's data
        return [_fetch_job(connection, job_id) for job_id in job_ids]


def _fetch_job(connection: redis.Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def replace_chunk_job(connection: redis.Redis, old: Job, make_job: Callable[[str], Job]) -> Job | None:
    """In one transaction: delete the chunk job `old` and queue make_job(id of the chunk's next
    generation) at the front of its queue (new's origin), but only while old is still its chunk's newest job
    and still in the status the caller saw. None when someone else changed it first (the worker
    took, finished or requeued it, or the monitor did), so that no two requeues of one attempt
    ever make two new generations."""
    work_id, index = old.args[0]["work_id"], int(old.args[0]["index"])
    generations, field = _generations_key(work_id), str(index)
    seen = old.get_status(refresh=False)
    old_queue = queue(old.origin, connection)

    def swap(pipe: Pipeline) -> Job | None:
        generation = int(pipe.hget(generations, field) or 0)
        status = pipe.hget(old.key, "status")
        if chunk_job_id(work_id, index, generation) != old.id or status is None or status.decode() != seen:
            return None
        execution_ids = [raw.decode() for raw in pipe.zrange(old.execution_registry.key, 0, -1)]
        new = make_job(chunk_job_id(work_id, index, generation + 1))
        pipe.multi()
        _delete_job(pipe, old, old_queue, execution_ids)
        pipe.hset(generations, field, generation + 1)
        queue(new.origin, connection).enqueue_job(new, pipeline=pipe, at_front=True)  # a moved file's new one
        return new

    return connection.transaction(swap, generations, old.key, old.execution_registry.key,
                                  value_from_callable=True)  # fmt: skip


def delete_jobs(connection: redis.Redis, jobs: Iterable[Job]) -> None:
    """Delete jobs and everything rq keeps about them, whatever state their records are in
    (rq's own job.delete() raises for a job whose execution record expired)."""
    for job in jobs:
        execution_ids = [raw.decode() for raw in connection.zrange(job.execution_registry.key, 0, -1)]
        with connection.pipeline() as pipe:
            _delete_job(pipe, job, queue(job.origin, connection), execution_ids)
            pipe.execute()


def _delete_job(pipe: Pipeline, job: Job, rq_queue: Queue, execution_ids: list[str]) -> None:
    pipe.lrem(rq_queue.key, 0, job.id)
    pipe.lrem(rq_queue.intermediate_queue_key, 0, job.id)
    if execution_ids:
        pipe.zrem(rq_queue.started_job_registry.key, *(f"{job.id}:{e}" for e in execution_ids))
    for registry in (rq_queue.finished_job_registry, rq_queue.failed_job_registry,
                     rq_queue.canceled_job_registry, rq_queue.deferred_job_registry,
                     rq_queue.scheduled_job_registry):  # fmt: skip
        pipe.zrem(registry.key, job.id)
    executions = [Execution(e, job.id, connection=rq_queue.connection).key for e in execution_ids]
    pipe.delete(job.key, job.dependents_key, job.dependencies_key, Result.get_key(job.id),
                job.execution_registry.key, *executions)  # fmt: skip


def forget_chunks(connection: redis.Redis, work_id: str) -> None:
    """Forget the generations and segment facts of a file's chunks (their jobs are gone)."""
    connection.delete(_generations_key(work_id), _segments_key(work_id))


# What the workers recorded of each committed segment (bytes, worker, host), by chunk index: the
# size of a file's output so far, and who encoded which chunk, for the dashboard's chunk map.
def _segments_key(work_id: str) -> str:
    return f"{KEY_PREFIX}segments:{work_id}"


def record_segment(connection: redis.Redis, work_id: str, chunk_index: int, facts: dict[str, Any], *,
                   only_if_missing: bool = False) -> None:  # fmt: skip
    """A finished file's facts go with its work's other keys: a week after the last segment."""
    key = _segments_key(work_id)
    pipe = connection.pipeline()  # MULTI/EXEC
    if only_if_missing:
        pipe.hsetnx(key, str(chunk_index), json.dumps(facts))
    else:
        pipe.hset(key, str(chunk_index), json.dumps(facts))
    pipe.expire(key, FILE_SPEC_TTL_SECONDS)
    pipe.execute()


def segments(connection: redis.Redis, work_id: str) -> dict[int, dict[str, Any]]:
    raw = connection.hgetall(_segments_key(work_id))
    return {int(index): json.loads(facts) for index, facts in raw.items()}


# A busy chunk refreshes this key every HEARTBEAT_SECONDS; gone means nobody is encoding it.
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TTL_SECONDS = 5


def chunk_heartbeat_key(job_id: str) -> str:
    return f"{KEY_PREFIX}alive:{job_id}"


def beat(connection: redis.Redis, job_id: str, worker: str) -> None:
    connection.set(chunk_heartbeat_key(job_id), worker, ex=HEARTBEAT_TTL_SECONDS)


def is_alive(connection: redis.Redis, job_id: str) -> bool:
    return bool(connection.exists(chunk_heartbeat_key(job_id)))


# Fencing: the newest attempt at a chunk owns it; an older one that wakes up late cannot commit.
ATTEMPT_TTL_SECONDS = 7 * 24 * 3600
COMMIT_LOCK_SECONDS = 10.0


def chunk_key(work_id: str, chunk_index: int) -> str:
    return f"{work_id}:{chunk_index}"


def claim_chunk(connection: redis.Redis, chunk: str, attempt: str) -> None:
    """Make attempt the chunk's newest, under the lock a commit holds (never halfway through one)."""
    with _commit_lock(connection, chunk) as locked:
        if not locked:
            raise LockError(f"chunk {chunk} is locked by a commit that does not end")
        connection.set(_attempt_key(chunk), attempt, ex=ATTEMPT_TTL_SECONDS)


@contextlib.contextmanager
def commit_fence(connection: redis.Redis, chunk: str, attempt: str) -> Iterator[bool]:
    """Yield True if attempt may commit now: it is the newest one, and no claim can come between
    this check and the end of the with block (the commit)."""
    with _commit_lock(connection, chunk) as locked:
        current = connection.get(_attempt_key(chunk)) if locked else None
        allowed = current is not None and current.decode() == attempt
        if allowed:
            with connection.pipeline() as pipe:
                pipe.incr(f"{KEY_PREFIX}commits:{chunk}")
                pipe.expire(f"{KEY_PREFIX}commits:{chunk}", ATTEMPT_TTL_SECONDS)
                pipe.execute()
        yield allowed


@contextlib.contextmanager
def _commit_lock(connection: redis.Redis, chunk: str) -> Iterator[bool]:
    """redis-py's Lock: released only by its holder, even after it expired and another took it."""
    lock = connection.lock(f"{KEY_PREFIX}commit:{chunk}", timeout=COMMIT_LOCK_SECONDS,
                           sleep=0.01, blocking_timeout=COMMIT_LOCK_SECONDS)  # fmt: skip
    locked = lock.acquire()
    try:
        yield locked
    finally:
        if locked:
            with contextlib.suppress(LockError):
                lock.release()


def newest_attempt(connection: redis.Redis, chunk: str) -> str | None:
    raw = connection.get(_attempt_key(chunk))
    return raw.decode() if raw else None


def _attempt_key(chunk: str) -> str:
    return f"{KEY_PREFIX}attempt:{chunk}"


def commit_count(connection: redis.Redis, chunk: str) -> int:
    """How many times a chunk's segment was committed (once, if all is well)."""
    return int(connection.get(f"{KEY_PREFIX}commits:{chunk}") or 0)
