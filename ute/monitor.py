"""The watchdog over chunks: dead encoders and stuck encoders give their chunk back, at the front.

rq alone notices a dead worker only after minutes. Each busy chunk here refreshes a short-lived
key every second (see jobs.encode_chunk), so a missing key means nobody is encoding it. A chunk
whose encoder is alive but makes no progress for much longer than the swarm's speed explains is
stopped and requeued too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq.command import send_command
from rq.job import Job, JobStatus

from ute import farm, state, submit, transfer
from ute.settings import chunk_retry_delays, stuck_seconds_override

log = logging.getLogger(__name__)

# How long a freshly started chunk may go without its first heartbeat.
START_GRACE_SECONDS = state.HEARTBEAT_TTL_SECONDS
# A job marked queued must be found in its queue within this time (a worker moves it out and
# marks it started in well under a second).
ORPHAN_GRACE_SECONDS = 5.0
# A chunk is stuck after this many frames' worth of time without a new frame (x265 holds back
# its lookahead, so the first frames take longest), and never sooner than STUCK_MIN_SECONDS.
STUCK_FRAMES = 150
STUCK_MIN_SECONDS = 120.0
# Before any encoder has reported a speed, only a very long silence counts as stuck.
STUCK_UNKNOWN_SPEED_SECONDS = 1800.0


@dataclass
class _Seen:
    frames: int
    since: float


@dataclass
class ChunkMonitor:
    """Call sweep() every second or so with the jobs of all chunks being encoded (at once: it
    forgets the progress of jobs it is not shown)."""

    connection: redis.Redis
    no_space: list[Job] = field(default_factory=list)  # chunks the last sweep found failed for want of space
    _progress: dict[str, _Seen] = field(default_factory=dict)
    _orphaned_since: dict[str, float] = field(default_factory=dict)
    _held_until: float = 0.0

    def hold(self, seconds: float = START_GRACE_SECONDS) -> None:
        """Take no missing heartbeat for a dead worker for a while (after Redis was out, every
        heartbeat may have lapsed while the encoders went on)."""
        self._held_until = time.monotonic() + seconds

    def sweep(self, jobs: Sequence[Job | None], queued: Sequence[str] = ()) -> list[str]:
        """Requeue dead and stuck chunks at the front of their queue; return the old job ids.
        jobs: the chunks' jobs (the running and failed ones are enough); queued: the ids of
        chunk jobs whose status is queued, if their jobs are not among jobs."""
        now = time.monotonic()
        self.no_space = []
        by_status: dict[JobStatus | None, list[Job]] = {}
        for job in jobs:
            if job is not None:
                by_status.setdefault(job.get_status(refresh=False), []).append(job)
        requeued = self._retry_failed(by_status.get(JobStatus.FAILED, []))
        queued_ids = [*queued, *(job.id for job in by_status.get(JobStatus.QUEUED, []))]
        requeued += self._rescue_orphans(queued_ids, now)
        jobs = by_status.get(JobStatus.STARTED, [])
        speeds = [float(job.meta.get("fps", 0)) for job in jobs if float(job.meta.get("fps", 0)) > 0]
        stuck_after = stuck_limit_seconds(sum(speeds) / len(speeds) if speeds else None)
        for job in jobs:
            if _younger_than(job, START_GRACE_SECONDS):
                continue
            if not state.is_alive(self.connection, job.id):
                if now < self._held_until:
                    continue
                if submit.requeue_at_front(self.connection, job):
                    log.warning("chunk job %s lost its worker %s; requeued at the front", job.id,
                                job.worker_name or "(unknown)")  # fmt: skip
                    requeued.append(job.id)
            elif self._stalled_for(job, now) >= stuck_after:
                if submit.requeue_at_front(self.connection, job):
                    log.warning("chunk job %s made no progress for %.0f s on %s; stopped and requeued",
                                job.id, stuck_after, job.worker_name)  # fmt: skip
                    _stop(self.connection, job)
                    requeued.append(job.id)
            else:
                continue
            self._progress.pop(job.id, None)
        for gone in set(self._progress) - {job.id for job in jobs}:
            del self._progress[gone]
        return requeued

    def _rescue_orphans(self, queued: list[str], now: float) -> list[str]:
        """A job marked queued but in no queue (a worker took it off just as Redis went down and
        lost the rest) would wait forever: after a grace period it is queued again."""
        waiting: set[str] = set()
        for name in state.QUEUES if queued else ():
            waiting.update(state.queue(name, self.connection).get_job_ids())
        rescued = []
        for job_id in queued:
            if job_id in waiting:
                self._orphaned_since.pop(job_id, None)
                continue
            since = self._orphaned_since.setdefault(job_id, now)
            if now - since < ORPHAN_GRACE_SECONDS:
                continue
            self._orphaned_since.pop(job_id, None)
            [job] = state.fetch_jobs(self.connection, [job_id])
            if job is not None and submit.requeue_at_front(self.connection, job):
                log.warning("chunk job %s was in no queue; queued again at the front", job_id)
                rescued.append(job_id)
        return rescued

    def _retry_failed(self, failed: list[Job]) -> list[str]:
        """Failed chunks with tries left go back to the front once their delay has passed. A full
        disk is not the chunk's fault: such a chunk goes again, uncounted, after the first delay
        (the service holds the queues while the disk is full); nor is a coordinator that was not
        serving the file to a network worker (it restarted)."""
        retried = []
        for job in failed:
            message = submit.failure_message(job)
            no_space = farm.is_no_space(message)
            if no_space:
                self.no_space.append(job)
            not_its_fault = no_space or transfer.is_coordinator_away(message)
            delay = chunk_retry_delays()[0] if not_its_fault else submit.retry_delay(job)
            if delay is None or job.ended_at is None or not _older_than(job.ended_at, delay):
                continue
            if submit.requeue_at_front(self.connection, job, failed=not not_its_fault):
                if not_its_fault:
                    log.warning("chunk job %s %s; trying it again (not counted as a failure)", job.id,
                                "found no space on the disk" if no_space else "found the coordinator away")
                else:
                    log.warning("chunk job %s failed on %s; trying it again (failure %d)", job.id,
                                job.worker_name, int(job.meta.get("failures", 0)) + 1)  # fmt: skip
                retried.append(job.id)
        return retried

    def _stalled_for(self, job: Job, now: float) -> float:
        frames = int(job.meta.get("frames_done", 0))
        seen = self._progress.get(job.id)
        if seen is None or seen.frames != frames:
            self._progress[job.id] = _Seen(frames, now)
            return 0.0
        return now - seen.since


def _stop(connection: redis.Redis, job: Job) -> None:
    """Tell the worker to stop an attempt that was already replaced (rq's send_stop_job_command
    would look the deleted job up first); its late commit is fenced out anyway."""
    if not job.worker_name:
        return
    try:
        send_command(connection, job.worker_name, "stop-job", job_id=job.id)
    except Exception as error:
        log.warning("could not stop job %s: %s", job.id, error)


def stuck_limit_seconds(encoder_fps: float | None) -> float:
    """How long an encoder may go without a new frame, given the swarm's speed per encoder."""
    override = stuck_seconds_override()
    if override is not None:
        return override
    if not encoder_fps:
        return STUCK_UNKNOWN_SPEED_SECONDS
    return max(STUCK_MIN_SECONDS, STUCK_FRAMES / encoder_fps)


def _younger_than(job: Job, seconds: float) -> bool:
    started = job.started_at or job.enqueued_at
    return started is not None and not _older_than(started, seconds)


def _older_than(moment: datetime, seconds: float) -> bool:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds() >= seconds
