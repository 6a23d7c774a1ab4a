"""How many threads a worker's encoder and segment check get: the cores this machine lets the
worker use, shared among the UTE workers announced with the same host name.

Two x265 encoders that each start a pool for every core make the cores switch between them:
on 2 cores with 2 workers, pools of one thread each took 1-13% less CPU for the same chunks.
But a pool cannot grow once started: a chunk started with nothing queued behind it takes every
core, so that the file's last chunks do not run on a part of the machine once the others are
done (while the others still run, the cores are oversubscribed, as they were before).
"""

from __future__ import annotations

import glob
import logging
import os
import socket

import redis

from ute import state

log = logging.getLogger(__name__)

NUMA_NODES = "/sys/devices/system/node/node[0-9]*"


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def numa_nodes() -> int:
    return len(glob.glob(NUMA_NODES)) or 1


def share(cores: int, workers: int) -> int:
    """Each worker's threads, rounded up: a pool is never quite busy, and an idle core is worse
    than a thread too many. Pure."""
    return max(1, -(-cores // max(1, workers)))


def threads_per_worker(connection: redis.Redis) -> int | None:
    """This worker's share of the machine's cores: shared with the other UTE workers announced
    from this host while chunks are queued for them. None, for the encoder's and decoder's own
    choice (every core), where the share is every core, where Redis does not say, and on a
    machine of several NUMA nodes (x265 reads a bare thread count as node 0's alone)."""
    cores = usable_cores()
    if numa_nodes() > 1:
        return None
    try:
        workers = state.workers_on_host(connection, socket.gethostname())
        queued = state.queued_count(connection)
    except redis.exceptions.RedisError as error:
        log.info("cannot count the workers on this machine (%s); x265 picks its own threads", error)
        return None
    threads = share(cores, min(workers, 1 + queued))
    return threads if threads < cores else None
