"""Each chunk's encoder log (x265's summary or the error), with its timings and worker.

They live in rq's job results ($UTE_LOG_TTL, a week by default) and are copied into the history
when a file is finished; `ute logs` reads whichever still has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ute import state


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
        logs.append(ChunkLog(index, job.id, str(job.get_status(refresh=False)), job.worker_name or "",
                             value.get("seconds"), value.get("fps"), lines))  # fmt: skip
    return logs


def render_all(logs: list[ChunkLog]) -> str:
    return "\n".join(log.render() for log in logs)
