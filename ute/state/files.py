"""Files as `ute status` lists them (a record per file, with the requests of `ute pause`,
`cancel`, `move`), and the farm's pause."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis
from redis.client import Pipeline

from ute.state.base import KEY_PREFIX

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

