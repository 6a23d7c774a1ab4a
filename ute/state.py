"""Everything UTE keeps in Redis: queue names, job ids and keys. No other module spells them."""

from __future__ import annotations

import hashlib

import redis
from rq import Queue
from rq.serializers import JSONSerializer

QUEUE_HIGH = "high"
QUEUE_LOW = "low"
QUEUES = (QUEUE_HIGH, QUEUE_LOW)  # workers listen in this order
KEY_PREFIX = "ute:"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def connect(url: str) -> redis.Redis:
    """A client that notices a dead server within seconds instead of hanging."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=10
    )


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def fingerprint(path: str, size: int, mtime_ns: int, settings: str = "") -> str:
    """A file's id: the same while its path, size, modification time and settings are."""
    data = f"{path}\0{size}\0{mtime_ns}\0{settings}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()[:16]


def chunk_job_id(file_id: str, chunk_index: int) -> str:
    return f"ute-{file_id}-chunk-{chunk_index:05d}"


# A busy chunk refreshes this key every HEARTBEAT_SECONDS; gone means nobody is encoding it.
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TTL_SECONDS = 5


def chunk_heartbeat_key(job_id: str) -> str:
    return f"{KEY_PREFIX}alive:{job_id}"


def beat(connection: redis.Redis, job_id: str, worker: str) -> None:
    connection.set(chunk_heartbeat_key(job_id), worker, ex=HEARTBEAT_TTL_SECONDS)


def is_alive(connection: redis.Redis, job_id: str) -> bool:
    return bool(connection.exists(chunk_heartbeat_key(job_id)))
