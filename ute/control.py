"""`ute pause|resume|cancel|move|retry ID`: requests a running service acts on, plus what can be
done at once (taking a paused file's chunks off the queue, stopping a cancelled file's encoders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis
from rq.command import send_stop_job_command
from rq.job import JobStatus

from ute import state
from ute.errors import UteError
from ute.history import History
from ute.inbox import ERROR_SUFFIX, InboxLayout, unused_name
from ute.names import beside

PAUSE, CANCEL, RETRY = "pause", "cancel", "retry"
RUNNING_STATES = ("queued", "encoding", "paused")


def _change(connection: redis.Redis, file_id: str, states: tuple[str, ...], refusal: str, **fields: str
            ) -> dict[str, str]:  # fmt: skip
    """Write fields into the file's record, in one transaction with the check that it is in one of
    states (a file that ends meanwhile is left alone); the record as it was."""
    record = state.change_running_file(connection, file_id, states, **fields)
    if record is None:
        raise UteError(f"no file {file_id} in Redis: `ute status` lists the ids")
    if record.get("state") not in states:
        raise UteError(f"{file_id} is {record.get('state')}: {refusal}")
    return record


def pause(connection: redis.Redis, file_id: str) -> str:
    record = _change(connection, file_id, RUNNING_STATES, "only queued or encoding files can pause",
                     control=PAUSE, state="paused")  # fmt: skip
    return f"pausing {Path(record['source']).name}: its queued chunks wait, running ones finish"


def resume(connection: redis.Redis, file_id: str) -> str:
    record = _change(connection, file_id, ("paused",), "only a paused file can resume", control="",
                     state="encoding")  # fmt: skip
    return f"resumed {Path(record['source']).name}"


def cancel(connection: redis.Redis, file_id: str) -> str:
    record = _change(connection, file_id, RUNNING_STATES, "only queued, encoding or paused files can be "
                     "cancelled", control=CANCEL)  # fmt: skip
    return (f"cancelling {Path(record['source']).name}: its chunks stop, its work folder goes, "
            "the source stays where it is")  # fmt: skip


def move(connection: redis.Redis, file_id: str, queue: str) -> str:
    """Put the file in queue high or low: `ute status` shows it at once, and the service moves its
    queued chunks (running ones finish where they are; requeued ones go to the new queue)."""
    if queue not in state.QUEUES:
        raise UteError(f"cannot move {file_id} to queue {queue!r}: use {' or '.join(state.QUEUES)}")
    record = _change(connection, file_id, RUNNING_STATES, "only queued, encoding or paused files can move "
                     "to another queue", queue=queue, move_to=queue)  # fmt: skip
    name = Path(record["source"]).name
    if (record.get("move_to") or record.get("queue")) == queue:  # a move asked for earlier is what counts
        return f"{name} is in queue {queue} already"
    return f"moving {name} to queue {queue}: its queued chunks move, running ones finish where they are"


def take_off_queue(connection: redis.Redis, work_id: str, chunk_count: int, *, stop_running: bool) -> None:
    """The service's half of pause (queued chunks leave the queue) and cancel (running ones stop)."""
    jobs = [job for job in state.current_chunk_jobs(connection, work_id, chunk_count) if job is not None]
    # Queued again by the service on resume.
    state.delete_jobs(connection, [job for job in jobs if job.get_status(refresh=False) == JobStatus.QUEUED])
    for job in jobs:
        if stop_running and job.get_status(refresh=False) == JobStatus.STARTED:
            send_stop_job_command(connection, job.id)


def retry(connection: redis.Redis, file_id: str, inbox: Path, history: History | None = None) -> str:
    """A failed file goes back from inbox/failed/ to where it came from; a cancelled one is taken
    again. Redis forgets finished files after an hour; the history remembers them."""
    record = state.file_record(connection, file_id) or _record_in_history(history, file_id)
    source = Path(record["source"])
    if record.get("state") == "cancelled":
        state.save_file_record(connection, file_id, source=str(source), state="cancelled", control=RETRY)
        return f"{source.name} will be encoded again"
    if record.get("state") != "failed":
        raise UteError(f"{file_id} is {record.get('state')}: only failed or cancelled files can be retried")
    layout = InboxLayout(inbox)
    failed_copy = layout.failed_copy(source.name, file_id)
    if failed_copy is None or not failed_copy.exists():
        raise UteError(f"{source.name} of {file_id} is not in {layout.failed} any more; put the file back "
                       "into the inbox by hand")  # fmt: skip
    target = unused_name(layout.high / source.name if record.get("queue") == state.QUEUE_HIGH
                         else layout.root / source.name)  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    beside(failed_copy, ERROR_SUFFIX).unlink(missing_ok=True)
    shutil.move(failed_copy, target)
    return f"{source.name} is back in {target.parent}; the service takes it again"


def _record_in_history(history: History | None, file_id: str) -> dict[str, str]:
    entry = history.latest(file_id) if history else None
    if entry is None:
        raise UteError(f"no file {file_id} in Redis or in the history: `ute history` lists the ids")
    return {"source": entry.source, "state": entry.outcome, "queue": entry.queue or ""}
