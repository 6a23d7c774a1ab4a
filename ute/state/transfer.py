"""Chunks over the network: each file's ticket (the coordinator's URL and the file's token), how
each worker reads and writes, and the bytes moved per worker and per chunk."""

from __future__ import annotations

import json
from typing import Any

import redis

from ute.state.base import KEY_PREFIX
from ute.state.chunks import FILE_SPEC_TTL_SECONDS

MOVED_TTL_SECONDS = 7 * 24 * 3600


def _ticket_key(work_id: str) -> str:
    return f"{KEY_PREFIX}ticket:{work_id}"


def save_ticket(connection: redis.Redis, work_id: str, ticket: dict[str, Any], *,
                only_if_missing: bool = False) -> None:  # fmt: skip
    connection.set(_ticket_key(work_id), json.dumps(ticket), ex=FILE_SPEC_TTL_SECONDS, nx=only_if_missing)


def load_ticket(connection: redis.Redis, work_id: str) -> Any:
    """The ticket's JSON as stored (the caller checks its form), or None."""
    raw = connection.get(_ticket_key(work_id))
    return json.loads(raw) if raw else None


def drop_ticket(connection: redis.Redis, work_id: str) -> None:
    connection.delete(_ticket_key(work_id))


def _worker_moved_key(worker: str) -> str:
    return f"{KEY_PREFIX}moved:worker:{worker}"


def _chunks_moved_key(work_id: str) -> str:
    return f"{KEY_PREFIX}moved:chunks:{work_id}"


def note_worker_input(connection: redis.Redis, worker: str, how: str) -> None:
    """How the worker reads sources and writes segments for its current chunk."""
    key = _worker_moved_key(worker)
    with connection.pipeline() as pipe:
        pipe.hset(key, "input", how)
        pipe.expire(key, MOVED_TTL_SECONDS)
        pipe.execute()


def count_moved(connection: redis.Redis, worker: str | None, work_id: str, chunk_index: int | None, *,
                sent: int = 0, received: int = 0) -> None:  # fmt: skip
    """Bytes the coordinator sent to (source) and received from (segments) a worker, for a chunk."""
    if not sent and not received:
        return
    with connection.pipeline() as pipe:
        if worker:
            key = _worker_moved_key(worker)
            pipe.hincrby(key, "sent", sent)
            pipe.hincrby(key, "received", received)
            pipe.expire(key, MOVED_TTL_SECONDS)
        if chunk_index is not None:
            key = _chunks_moved_key(work_id)
            pipe.hincrby(key, f"{chunk_index}:sent", sent)
            pipe.hincrby(key, f"{chunk_index}:received", received)
            pipe.expire(key, MOVED_TTL_SECONDS)
        pipe.execute()


def workers_moved(connection: redis.Redis, workers: list[str]) -> dict[str, dict[str, Any]]:
    """Per worker: its input ("shared folder" or "network") and the bytes moved to and from it."""
    pipe = connection.pipeline(transaction=False)
    for worker in workers:
        pipe.hgetall(_worker_moved_key(worker))
    facts = {}
    for worker, raw in zip(workers, pipe.execute(), strict=True):
        fields = {key.decode(): value.decode() for key, value in raw.items()}
        facts[worker] = {"input": fields.get("input"), "bytes_sent": int(fields.get("sent", 0)),
                         "bytes_received": int(fields.get("received", 0))}  # fmt: skip
    return facts


def chunks_moved(connection: redis.Redis, work_id: str) -> dict[int, dict[str, int]]:
    """Per chunk of a file: the bytes of source sent for it, and of segment and check received."""
    moved: dict[int, dict[str, int]] = {}
    for field, value in connection.hgetall(_chunks_moved_key(work_id)).items():
        index, _, direction = field.decode().partition(":")
        moved.setdefault(int(index), {"sent": 0, "received": 0})[direction] = int(value)
    return moved

