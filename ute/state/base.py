"""Connections, queues and the prefix of every key UTE keeps in Redis."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from rq import Queue
from rq.serializers import JSONSerializer

QUEUE_HIGH = "high"
QUEUE_LOW = "low"
QUEUES = (QUEUE_HIGH, QUEUE_LOW)  # workers listen in this order
KEY_PREFIX = "ute:"
CHUNK_EVENTS_CHANNEL = KEY_PREFIX + "chunk-events"


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


def queued_count(connection: redis.Redis) -> int:
    """How many jobs wait in UTE's queues, all files together."""
    pipe = connection.pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(queue(name, connection).key)
    return sum(pipe.execute())


def give_back(connection: redis.Redis, queue_name: str, job_id: str) -> None:
    """Put a dequeued job back at the front of its queue (and out of rq's intermediate list,
    where a worker on a single queue keeps what it took)."""
    rq_queue = queue(queue_name, connection)
    pipe = connection.pipeline()
    pipe.lrem(rq_queue.intermediate_queue_key, 1, job_id)
    rq_queue.push_job_id(job_id, pipeline=pipe, at_front=True)
    pipe.execute()


def announce_chunk_ended(connection: redis.Redis, job_id: str) -> None:
    """Tell whoever listens (the coordinator) that a chunk's job just finished or failed: rq
    has recorded its status by then."""
    connection.publish(CHUNK_EVENTS_CHANNEL, job_id)


def chunk_events(connection: redis.Redis) -> redis.client.PubSub:
    """A subscription to announce_chunk_ended's messages (close it when done)."""
    subscription = connection.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(CHUNK_EVENTS_CHANNEL)
    return subscription
