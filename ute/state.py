"""Everything UTE keeps in Redis: queue names, job ids and keys. No other module spells them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.client import Pipeline
from redis.exceptions import LockError
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

log = logging.getLogger(__name__)

QUEUE_HIGH = "high"
QUEUE_LOW = "low"
QUEUES = (QUEUE_HIGH, QUEUE_LOW)  # workers listen in this order
KEY_PREFIX = "ute:"


def redacted(url: str) -> str:
    """The URL with its password (`:secret@` or `?password=secret`) replaced, for logs and messages."""
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        masked = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(masked, safe="/*"))
    return urlunsplit(parts)


def connect(url: str) -> redis.Redis:
    """A client that notices a dead server within seconds instead of hanging."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=10
    )


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def register_queues(connection: redis.Redis) -> None:
    """Put both queues on rq's list of queues (rq adds a queue at its first job), so that
    rq-dashboard shows them from the start."""
    connection.sadd(Queue.redis_queues_keys, *(queue(name, connection).key for name in QUEUES))


def give_back(connection: redis.Redis, queue_name: str, job_id: str) -> None:
    """Put a dequeued job back at the front of its queue (and out of rq's intermediate list,
    where a worker on a single queue keeps what it took)."""
    rq_queue = queue(queue_name, connection)
    pipe = connection.pipeline()
    pipe.lrem(rq_queue.intermediate_queue_key, 1, job_id)
    rq_queue.push_job_id(job_id, pipeline=pipe, at_front=True)
    pipe.execute()


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
    pipe = connection.pipeline(transaction=False)  # reads only
    for job_id in job_ids:
        pipe.hget(Job.key_for(job_id), "status")
    return [(job_id, JobStatus(raw.decode()) if raw else None)
            for job_id, raw in zip(job_ids, pipe.execute(), strict=True)]  # fmt: skip


def current_chunk_jobs(connection: redis.Redis, work_id: str, chunk_count: int) -> list[Job | None]:
    """The jobs of a file's chunks (None where Redis has none), in chunk order."""
    return fetch_jobs(connection, current_chunk_job_ids(connection, work_id, range(chunk_count)))


def fetch_jobs(connection: redis.Redis, job_ids: Sequence[str]) -> list[Job | None]:
    """Whole job records, in one round trip (None for a job Redis does not have)."""
    return Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer)


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


def _attempt_key(chunk: str) -> str:
    return f"{KEY_PREFIX}attempt:{chunk}"


def commit_count(connection: redis.Redis, chunk: str) -> int:
    """How many times a chunk's segment was committed (once, if all is well)."""
    return int(connection.get(f"{KEY_PREFIX}commits:{chunk}") or 0)


# Files, for `ute status`: a hash per file and an index in arrival order. Finished files stay
# visible for FINISHED_FILE_TTL_SECONDS.
FILES_INDEX = f"{KEY_PREFIX}files"
FINISHED_FILE_TTL_SECONDS = 3600


def _file_record_key(file_id: str) -> str:
    return f"{KEY_PREFIX}file:{file_id}"


def save_file_record(connection: redis.Redis, file_id: str, /, **fields: Any) -> None:
    """Create or update the record of the file with this id, in one transaction; lists and dicts
    are stored as JSON. Its field `work_id` names the file's chunks (chunk_job_id)."""
    _write_file_record(connection, file_id, fields, expire=False)


def finish_file_record(connection: redis.Redis, file_id: str, outcome: str, /, **fields: Any) -> None:
    """The file's last state, in the same transaction as the hour it stays listed for."""
    _write_file_record(connection, file_id, {"state": outcome, **fields}, expire=True)


def _write_file_record(connection: redis.Redis, file_id: str, fields: dict[str, Any], *, expire: bool
                       ) -> None:  # fmt: skip
    values = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in fields.items()}
    key = _file_record_key(file_id)
    pipe = connection.pipeline()  # MULTI/EXEC
    pipe.hset(key, mapping=values)
    if expire:
        pipe.expire(key, FINISHED_FILE_TTL_SECONDS)
    else:
        pipe.persist(key)
    pipe.zadd(FILES_INDEX, {file_id: time.time()}, nx=True)
    pipe.execute()


def change_running_file(connection: redis.Redis, file_id: str, running_states: Iterable[str], /,
                        **fields: Any) -> dict[str, str] | None:  # fmt: skip
    """Write fields into the record of a file that is in one of running_states, in one
    transaction with that check: the record as it was, or None (and nothing written) when the
    file is unknown, or ended meanwhile (its hour-long expiry stays)."""
    key = _file_record_key(file_id)
    wanted = set(running_states)

    def change(pipe: Pipeline) -> dict[str, str] | None:
        raw = pipe.hgetall(key)
        record = {k.decode(): v.decode() for k, v in raw.items()}
        if record.get("state") not in wanted:
            pipe.multi()  # nothing to write
            return record or None
        pipe.multi()
        pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
        return record

    return connection.transaction(change, key, value_from_callable=True)


def file_control(connection: redis.Redis, file_id: str) -> str:
    """What a user asked for with `ute pause|cancel|retry` ("" for nothing)."""
    return file_requests(connection, [file_id])[file_id][0]


def file_requests(connection: redis.Redis, file_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Of many files, in one round trip: file_control, and the queue `ute move` asked for ("" for
    none)."""
    ids = list(file_ids)
    pipe = connection.pipeline(transaction=False)  # reads only
    for file_id in ids:
        pipe.hmget(_file_record_key(file_id), "control", "move_to")
    return {file_id: (control.decode() if control else "", move_to.decode() if move_to else "")
            for file_id, (control, move_to) in zip(ids, pipe.execute(), strict=True)}  # fmt: skip


def file_queue(connection: redis.Redis, file_id: str) -> str | None:
    """The queue the file is in now (`ute move` changes it)."""
    raw = connection.hget(_file_record_key(file_id), "queue")
    return raw.decode() if raw else None


def file_record(connection: redis.Redis, file_id: str) -> dict[str, str] | None:
    raw = connection.hgetall(_file_record_key(file_id))
    return {k.decode(): v.decode() for k, v in raw.items()} if raw else None


def file_records(connection: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    """Every file UTE knows about, in arrival order; expired ones leave the index."""
    file_ids = [raw.decode() for raw in connection.zrange(FILES_INDEX, 0, -1)]
    pipe = connection.pipeline(transaction=False)  # reads: work while writes are refused
    for file_id in file_ids:
        pipe.hgetall(_file_record_key(file_id))
    records = []
    for file_id, raw in zip(file_ids, pipe.execute(), strict=True):
        if raw:
            records.append((file_id, {k.decode(): v.decode() for k, v in raw.items()}))
        else:
            connection.zrem(FILES_INDEX, file_id)
    return records


# The farm's pause: while the service finds a disk nearly full it keeps this key alive with the
# reason; workers take no chunk while it exists. It lapses by itself if the service goes away.
FARM_PAUSE_KEY = f"{KEY_PREFIX}farm:paused"
FARM_PAUSE_TTL_SECONDS = 30


def pause_farm(connection: redis.Redis, reason: str) -> None:
    connection.set(FARM_PAUSE_KEY, reason, ex=FARM_PAUSE_TTL_SECONDS)


def resume_farm(connection: redis.Redis) -> None:
    connection.delete(FARM_PAUSE_KEY)


def farm_pause(connection: redis.Redis) -> str | None:
    """Why the farm is paused, or None."""
    raw = connection.get(FARM_PAUSE_KEY)
    return raw.decode() if raw else None


def try_write(connection: redis.Redis) -> None:
    """A write that changes nothing that matters: raises what Redis says when it refuses writes."""
    connection.set(f"{KEY_PREFIX}write-probe", "1", px=1000)


# Workers announce themselves every second with a short-lived key: a dead one drops out of
# `ute status` within WORKER_PRESENCE_TTL_SECONDS (rq's own registry keeps it for minutes).
WORKER_PRESENCE_TTL_SECONDS = 5


def announce_worker(connection: redis.Redis, name: str, facts: dict[str, Any]) -> None:
    connection.set(f"{KEY_PREFIX}worker:{name}", json.dumps(facts), ex=WORKER_PRESENCE_TTL_SECONDS)


def withdraw_worker(connection: redis.Redis, name: str) -> None:
    connection.delete(f"{KEY_PREFIX}worker:{name}")


def live_workers(connection: redis.Redis) -> list[dict[str, Any]]:
    keys = sorted(connection.scan_iter(match=f"{KEY_PREFIX}worker:*", count=500))
    return [json.loads(raw) for raw in connection.mget(keys) if raw] if keys else []


# Frames the swarm encoded, counted by the encoders as they go, in buckets that live an hour: the
# dashboard's chart of swarm fps over the last hour, whoever was watching.
SWARM_BUCKET_SECONDS = 10
SWARM_HISTORY_SECONDS = 3600


def _frames_key(bucket_start: int) -> str:
    return f"{KEY_PREFIX}frames:{bucket_start}"


def count_encoded_frames(connection: redis.Redis, frames: int, now: float | None = None) -> None:
    if frames <= 0:
        return
    bucket_start = int((time.time() if now is None else now) // SWARM_BUCKET_SECONDS) * SWARM_BUCKET_SECONDS
    pipe = connection.pipeline()  # MULTI/EXEC: a bucket never lives for ever
    pipe.incrby(_frames_key(bucket_start), frames)
    pipe.expire(_frames_key(bucket_start), SWARM_HISTORY_SECONDS + 2 * SWARM_BUCKET_SECONDS)
    pipe.execute()


def swarm_fps_history(connection: redis.Redis, now: float | None = None) -> list[tuple[int, float]]:
    """(bucket start, mean fps over the bucket) for each finished bucket of the last hour,
    oldest first; a bucket nobody encoded in is 0."""
    current = int((time.time() if now is None else now) // SWARM_BUCKET_SECONDS) * SWARM_BUCKET_SECONDS
    starts = list(range(current - SWARM_HISTORY_SECONDS, current, SWARM_BUCKET_SECONDS))
    counts = connection.mget([_frames_key(start) for start in starts])
    return [(start, int(count or 0) / SWARM_BUCKET_SECONDS)
            for start, count in zip(starts, counts, strict=True)]  # fmt: skip
