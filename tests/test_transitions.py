"""Chunk state changes in Redis are atomic: hammered from many clients at once against the real
test Redis, a requeue makes one new generation and a chunk is committed once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ute import state, submit

CLIENTS = 8
T = TypeVar("T")
WORK_ID = state.work_id("f" * 16, "{}")


def _queued_chunk(connection: Any, work_id: str = WORK_ID, index: int = 3) -> Job:
    spec = {"work_id": work_id, "index": index}
    queue = state.queue(state.QUEUE_LOW, connection)
    job_id = state.chunk_job_id(work_id, index)
    return queue.enqueue_job(queue.create_job(**submit._job_kwargs(spec, job_id)))


def _all_at_once(count: int, action: Callable[[int], T]) -> list[T]:
    """Run action(n) for n in range(count) on as many threads, released together."""
    start = threading.Barrier(count)

    def run(n: int) -> T:
        start.wait()
        return action(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_requeues_of_one_attempt_from_many_clients_make_one_new_generation(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    job = _queued_chunk(connection)
    queue = state.queue(state.QUEUE_LOW, connection)
    for round_number in range(1, 11):
        snapshots = [Job.fetch(job.id, connection=state.connect(clean_redis), serializer=JSONSerializer)
                     for _ in range(CLIENTS)]  # fmt: skip
        won = _all_at_once(CLIENTS, lambda n, jobs=snapshots: submit.requeue_at_front(jobs[n].connection,
                                                                                      jobs[n]))  # fmt: skip
        assert won.count(True) == 1, won
        assert state.chunk_generations(connection, WORK_ID) == {3: round_number}
        new_id = state.chunk_job_id(WORK_ID, 3, round_number)
        assert queue.get_job_ids() == [new_id]
        assert not connection.exists(job.key)
        job = Job.fetch(new_id, connection=connection, serializer=JSONSerializer)
        assert job.meta["requeues"] == round_number


def test_a_requeue_from_an_old_snapshot_does_nothing_once_the_job_moved_on(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    job = _queued_chunk(connection)
    stale = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    job.set_status(JobStatus.STARTED)  # a worker took it after the monitor looked
    assert not submit.requeue_at_front(connection, stale)
    assert state.chunk_generations(connection, WORK_ID) == {}
    assert submit.requeue_at_front(connection, Job.fetch(job.id, connection=connection,
                                                         serializer=JSONSerializer))  # fmt: skip
    assert not submit.requeue_at_front(connection, stale), "an older generation is never requeued"
    assert state.chunk_generations(connection, WORK_ID) == {3: 1}


def test_a_requeue_survives_execution_records_that_expired(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    job = _queued_chunk(connection)
    job.set_status(JobStatus.STARTED)
    connection.zadd(job.execution_registry.key, {"gone": 1})  # its record expired long ago
    connection.zadd(state.queue(state.QUEUE_LOW, connection).started_job_registry.key, {f"{job.id}:gone": 1})
    assert submit.requeue_at_front(connection, Job.fetch(job.id, connection=connection,
                                                         serializer=JSONSerializer))  # fmt: skip
    assert not connection.exists(job.execution_registry.key)
    assert connection.zcard(state.queue(state.QUEUE_LOW, connection).started_job_registry.key) == 0


def test_of_many_attempts_committing_at_once_only_the_newest_commits(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    for round_number in range(10):
        chunk = state.chunk_key(state.work_id("e" * 16, "{}"), round_number)
        attempts = [f"attempt-{n}" for n in range(CLIENTS)]

        def claim(n: int, chunk: str = chunk, attempts: list[str] = attempts) -> None:
            state.claim_chunk(state.connect(clean_redis), chunk, attempts[n])

        def commit(n: int, chunk: str = chunk, attempts: list[str] = attempts) -> bool:
            with state.commit_fence(state.connect(clean_redis), chunk, attempts[n]) as allowed:
                return allowed

        _all_at_once(CLIENTS, claim)
        newest = connection.get(f"{state.KEY_PREFIX}attempt:{chunk}").decode()

        allowed = _all_at_once(CLIENTS, commit)
        assert [attempts[n] for n, ok in enumerate(allowed) if ok] == [newest]
        assert state.commit_count(connection, chunk) == 1


def test_a_claim_waits_for_a_commit_in_progress(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    chunk = state.chunk_key(state.work_id("d" * 16, "{}"), 0)
    state.claim_chunk(connection, chunk, "old")
    events: list[str] = []
    claiming = threading.Thread(target=lambda: (state.claim_chunk(state.connect(clean_redis), chunk, "new"),
                                                events.append("claimed")))  # fmt: skip
    with state.commit_fence(connection, chunk, "old") as allowed:
        assert allowed
        claiming.start()
        claiming.join(timeout=0.5)  # it cannot finish while the commit holds the lock
        events.append("committed")
    claiming.join()
    assert events == ["committed", "claimed"]
    with state.commit_fence(connection, chunk, "old") as allowed:
        assert not allowed
