"""The swarm: workers announcing themselves, and the frames they encode for the fps history."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from ute.state.base import KEY_PREFIX

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


def workers_on_host(connection: redis.Redis, host: str) -> int:
    """How many workers announce themselves from host."""
    return sum(1 for worker in live_workers(connection) if worker.get("host") == host)


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
