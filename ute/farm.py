"""Whether the farm can work: Redis accepts writes and UTE's disks have room. While either is not
so, the farm is paused (no chunk is handed out, no file is muxed) and carries on by itself once
it is; nothing fails for it and no retry is spent on it."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import redis
from rq.job import Job

from ute import state
from ute.settings import min_free_bytes

log = logging.getLogger(__name__)

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as ffmpeg and Python say it
_WRITE_REFUSALS = {
    "MISCONF": "Redis cannot save its data (its disk is full or its folder is gone): free space where "
               "Redis keeps its data",
    "OOM": "Redis is out of memory (maxmemory reached): raise its maxmemory or give it more memory",
    "READONLY": "Redis is a read-only replica: point UTE at the primary, or run REPLICAOF NO ONE",
}  # fmt: skip


def write_refusal(error: BaseException) -> str | None:
    """What to do about Redis refusing a write, if error is that (and not a bug of ours)."""
    if isinstance(error, redis.exceptions.OutOfMemoryError):  # redis-py drops these codes
        return _WRITE_REFUSALS["OOM"]
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return _WRITE_REFUSALS["READONLY"]
    if not isinstance(error, redis.exceptions.ResponseError):
        return None
    return _WRITE_REFUSALS.get(str(error).split(" ", 1)[0])


# While Redis is away, clients wait ever longer between tries, up to this.
REDIS_RETRY_MAX_SECONDS = 30.0
WRITE_REFUSED_RETRY_MAX_SECONDS = 5.0


class RedisBackoff:
    """Pauses between polls that grow while Redis is unreachable or refuses writes, and shrink
    back once it answers. A refusal is logged once when it starts and once when it ends."""

    def __init__(self, pause: float) -> None:
        self.normal = self.pause = pause
        self.refusing: str | None = None

    def answered(self) -> bool:
        """Redis works again; whether it had been out until now."""
        was_out = self.pause != self.normal or self.refusing is not None
        if self.refusing is not None:
            log.info("Redis accepts writes again; the farm carries on")
        self.pause, self.refusing = self.normal, None
        return was_out

    def unavailable(self, error: BaseException) -> bool:
        """Wait longer if error says Redis is out; False for any other error (the caller's to raise)."""
        refusal = write_refusal(error)
        if refusal is not None:
            if self.refusing is None:
                log.error("the farm is paused: %s (Redis said: %s); it carries on by itself once Redis "
                          "accepts writes", refusal, error)  # fmt: skip
            self.refusing = refusal
            self.pause = min(self.pause * 2, WRITE_REFUSED_RETRY_MAX_SECONDS)
            return True
        if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            self.pause = min(self.pause * 2, REDIS_RETRY_MAX_SECONDS)
            log.warning("Redis is unreachable (%s); trying again in %.0f s", error, self.pause)
            return True
        return False


def redis_problem(connection: redis.Redis) -> str | None:
    """Try a write: the reason Redis refuses it, or None when it accepts writes."""
    try:
        state.try_write(connection)
    except redis.exceptions.ResponseError as error:
        return write_refusal(error)
    return None


def low_disk(folders: Iterable[Path], needed_bytes: int | None = None) -> str | None:
    """A line naming the first folder whose disk has less free space than UTE needs, or None."""
    needed = min_free_bytes() if needed_bytes is None else needed_bytes
    for folder in folders:
        free = shutil.disk_usage(_existing(folder)).free
        if free < needed:
            return (f"only {free / 2**20:.0f} MB free on the disk of {folder} (UTE needs "
                    f"{needed / 2**20:.0f} MB there): free some space (or set UTE_MIN_FREE_MB)")  # fmt: skip
    return None


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def is_no_space(message: str) -> bool:
    return NO_SPACE in message


class DiskGuard:
    """The coordinator's watch on its disks: the farm is paused while one is nearly full, or,
    after a chunk failed for want of space, until clearly more is free than then. Keeps the
    reason in Redis (for `ute status`) and logs each pause and resume once."""

    def __init__(self, connection: redis.Redis, folders: Iterable[Path]) -> None:
        self.connection = connection
        self.folders = list(folders)
        self.reason: str | None = None
        self._resumed_at = datetime.now(UTC)
        self._needed_after_failure: int | None = None

    def chunks_found_no_space(self, failed: Iterable[Job]) -> None:
        """Chunks that failed for want of space while the farm was working: wait for more room
        than there is now (the minimum was clearly not enough)."""
        if any(job.ended_at and _aware(job.ended_at) > self._resumed_at for job in failed):
            free = min(shutil.disk_usage(_existing(folder)).free for folder in self.folders)
            self._needed_after_failure = free + min_free_bytes()

    def check(self) -> bool:
        """Whether the farm may work now."""
        reason = low_disk(self.folders)
        if reason is None and self._needed_after_failure is not None:
            reason = low_disk(self.folders, self._needed_after_failure)
            if reason is None:
                self._needed_after_failure = None
            else:
                reason = f"a chunk found no space left; {reason}"
        if reason is not None:
            state.pause_farm(self.connection, reason)
            if self.reason is None:
                log.error("the farm is paused: %s; it carries on by itself once there is room", reason)
        elif self.reason is not None:
            state.resume_farm(self.connection)
            self._resumed_at = datetime.now(UTC)
            log.info("there is room on the disks again; the farm carries on")
        self.reason = reason
        return reason is None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
