"""The watchdog over chunks: a started chunk whose heartbeat is gone goes back to the front.

rq alone notices a dead worker only after minutes; each busy chunk here refreshes a short-lived
key every second (see jobs.encode_chunk), so a missing key means nobody is encoding it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ute import state, submit

log = logging.getLogger(__name__)

# How long a freshly started chunk may go without its first heartbeat.
START_GRACE_SECONDS = state.HEARTBEAT_TTL_SECONDS


def requeue_dead_chunks(connection: redis.Redis, job_ids: Sequence[str]) -> list[str]:
    """Requeue, at the front, every started chunk job that nobody is encoding; return their ids."""
    requeued = []
    now = datetime.now(UTC)
    for job in Job.fetch_many(list(job_ids), connection=connection, serializer=JSONSerializer):
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            continue
        started = job.started_at or job.enqueued_at
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if started and (now - started).total_seconds() < START_GRACE_SECONDS:
            continue
        if state.is_alive(connection, job.id):
            continue
        log.warning("chunk job %s lost its worker (%s); requeued at the front", job.id,
                    job.worker_name or "unknown")  # fmt: skip
        submit.requeue_at_front(connection, job)
        requeued.append(job.id)
    return requeued
