"""Each chunk's encoder log (x265's summary or the error), with its timings and worker.

They live in rq's job results ($UTE_LOG_TTL, a week by default) and are copied into the history
when a file is finished; `ute logs` reads whichever still has them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import redis

from ute import state
from ute.errors import UteError
from ute.history import History
from ute.logsetup import escape_control


@dataclass(frozen=True)
class ChunkLog:
    index: int
    job_id: str
    status: str
    worker: str
    seconds: float | None
    fps: float | None
    lines: tuple[str, ...]

    def render(self) -> str:
        timing = f", {self.seconds:.1f} s at {self.fps:.1f} fps" if self.seconds else ""
        head = f"== chunk {self.index} ({self.job_id}): {self.status} on {self.worker or '?'}{timing}"
        return "\n".join([head, *self.lines])


def collect(connection: redis.Redis, work_id: str, chunk_count: int) -> list[ChunkLog]:
    logs = []
    for index, job in enumerate(state.current_chunk_jobs(connection, work_id, chunk_count)):
        if job is None:
            continue
        result = job.latest_result()
        value = result.return_value if result and isinstance(result.return_value, dict) else {}
        lines = tuple(value.get("log", ()))
        if result and result.exc_string:
            lines = tuple(line for line in result.exc_string.splitlines() if line.strip())[-8:]
        status = job.get_status(refresh=False)
        # rq gives a JobStatus or its plain value, and str() of the first is "JobStatus.FINISHED"
        logs.append(ChunkLog(index, job.id, getattr(status, "value", str(status)), job.worker_name or "",
                             value.get("seconds"), value.get("fps"), lines))  # fmt: skip
    return logs


def render_all(logs: list[ChunkLog]) -> str:
    return "\n".join(log.render() for log in logs)


def file_log(connection: redis.Redis | None, file_id: str, history: History | None, chunk: int | None = None
             ) -> str:  # fmt: skip
    """`ute logs ID [--chunk N]`: the file's chunk logs from Redis (connection None: it does not
    answer), else from the history, under a header that names the file."""
    record = state.file_record(connection, file_id) if connection is not None else None
    if record and record.get("work_id"):
        chunk_count = len(json.loads(record.get("chunk_frames", "[]")))
        logs = collect(connection, record["work_id"], chunk_count)  # type: ignore[arg-type]
        if chunk is not None:
            logs = [log for log in logs if log.index == chunk]
            if not logs:
                raise UteError(f"{file_id} has no chunk {chunk} (it has {chunk_count})")
        return f"{_header(file_id, record.get('source', '?'))}\n{render_all(logs)}"
    entry = history.latest(file_id) if history else None
    if entry is None:
        where = "Redis" if connection is not None else "Redis (which does not answer)"
        raise UteError(f"no file {file_id} in {where} or in the history: `ute history` lists the ids")
    text = entry.log
    if chunk is not None:
        blocks = text.split("\n== chunk ")
        text = "\n".join(b if b.startswith("== chunk") else "== chunk " + b for b in blocks
                         if b.startswith((f"{chunk} ", f"== chunk {chunk} ")))  # fmt: skip
    return f"{_header(file_id, entry.source)}\n{text}"


def _header(file_id: str, source: str) -> str:
    return f"== file {file_id}: {escape_control(Path(source).name)}"  # a newline cannot split it
