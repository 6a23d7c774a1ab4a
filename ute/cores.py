"""How many threads a worker's encoder and segment check get: the cores this machine lets the
worker use, shared among the UTE workers on the machine.

Two x265 encoders that each start a pool for every core make the cores switch between them:
on 2 cores with 2 workers, pools of one thread each took 1-13% less CPU for the same chunks.
But a pool cannot grow once started, so a chunk that may end up running alone (nothing queued
behind it) takes every core, or a short file's last chunk would run on one.
"""

from __future__ import annotations

import logging
import os
import socket

import redis

from ute import state

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share(cores: int, workers: int) -> int:
    """Each worker's threads, rounded up: a pool is never quite busy, and an idle core is worse
    than a thread too many. Pure."""
    return max(1, -(-cores // max(1, workers)))


def threads_per_worker(connection: redis.Redis) -> int | None:
    """This worker's share of the machine's cores: shared with the other UTE workers announced from
    this host while there are queued chunks for them, all of them when there are none (the last
    chunks of a file run alone on an idle machine). None, for the encoder's own choice, when Redis
    does not say."""
    try:
        workers = state.workers_on_host(connection, socket.gethostname())
        queued = state.queued_count(connection)
    except redis.exceptions.RedisError as error:
        log.info("cannot count the workers on this machine (%s); x265 picks its own threads", error)
        return None
    return share(usable_cores(), min(workers, 1 + queued))
