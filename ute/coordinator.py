"""`ute encode`: one file through the whole swarm path (probe, plan, queue, wait, mux, verify)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ute import concat, plan, runner, state, submit, verify
from ute.errors import EncodeError, UteError
from ute.jobs import ChunkSpec
from ute.logs import console
from ute.probe import SourceInfo, probe
from ute.redis_server import private_redis
from ute.settings import EncodeSettings

log = logging.getLogger(__name__)

WORK_DIR_NAME = ".ute-work"
POLL_SECONDS = 0.5
WORKER_START_SECONDS = 60


@dataclass(frozen=True)
class EncodeReport:
    source: Path
    output: Path
    frames: int
    chunks: int
    seconds: float
    source_bytes: int
    output_bytes: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def plan_for(info: SourceInfo, settings: EncodeSettings) -> list[plan.Chunk]:
    bounds = plan.ChunkBounds.around(plan.target_frames(info.fps, settings.chunk_frames))
    return plan.plan_chunks(info.frame_count, info.keyframes, bounds)


def chunk_specs(
    info: SourceInfo, chunks: Sequence[plan.Chunk], settings: EncodeSettings,
    file_id: str, work_dir: Path,
) -> list[ChunkSpec]:  # fmt: skip
    start_pts = dict(zip(info.keyframes, info.keyframe_pts, strict=True))
    return [
        ChunkSpec(
            file_id=file_id,
            source=info.path,
            video_index=info.video_index,
            index=chunk.index,
            start=chunk.start,
            frames=chunk.frames,
            seek_microseconds=round(info.seconds_from_start(start_pts[chunk.start]) * 1_000_000),
            segment=str(work_dir / concat.segment_name(chunk.index)),
            settings=settings.to_json(),
        )
        for chunk in chunks
    ]


def check_paths(source: Path, output: Path, *, force: bool) -> None:
    if output.suffix.lower() != ".mkv":
        raise UteError(f"{output}: UTE writes Matroska; give the output a .mkv name")
    if output.exists() and output.resolve() == source.resolve():
        raise UteError(f"{output}: the output would overwrite the source; choose another name")
    if output.exists() and not force:
        raise UteError(f"{output}: already exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise UteError(f"{output.parent}: no such folder for the output")


def encode_file(
    source: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    workers: int,
    redis_url: str | None,
    force: bool = False,
) -> EncodeReport:
    """Encode source into output through rq workers; raise UteError unless verified."""
    source, output = source.absolute(), output.absolute()
    check_paths(source, output, force=force)
    started = time.monotonic()
    info = probe(source)
    chunks = plan_for(info, settings)
    file_id = state.fingerprint(info.path, info.size, info.mtime_ns, json.dumps(settings.to_json()))
    work_dir = output.parent / WORK_DIR_NAME / file_id
    work_dir.mkdir(parents=True, exist_ok=True)
    log.info("%s: %d frames at %.3f fps, %d chunks", source.name, info.frame_count, info.fps,
             len(chunks))  # fmt: skip

    with _redis(redis_url, work_dir) as url, _local_workers(url, workers, work_dir) as local:
        connection = state.connect(url)
        submit.clear_chunks(connection, file_id, len(chunks))
        job_ids = submit.submit_chunks(
            connection, chunk_specs(info, chunks, settings, file_id, work_dir)
        )
        if workers == 0:
            log.info("waiting for workers: start `ute-worker --redis-url %s` on any machine", url)
        _wait_for_chunks(connection, job_ids, chunks, source.name, local, work_dir)

    partial = output.with_name(f".{output.name}.{file_id}.part")
    try:
        concat.mux(info, chunks, work_dir, partial)
        verified = verify.verify_output(info, partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    _remove_if_empty(work_dir.parent)
    return EncodeReport(
        source, output, verified.frames, len(chunks), time.monotonic() - started,
        info.size, verified.size,
    )  # fmt: skip


@contextlib.contextmanager
def _redis(redis_url: str | None, work_dir: Path) -> Iterator[str]:
    if redis_url:
        yield redis_url
        return
    data_dir = work_dir / "redis"
    # The segments on disk are what a rerun resumes from; old queue state would only confuse it.
    shutil.rmtree(data_dir, ignore_errors=True)
    with private_redis(data_dir) as url:
        yield url


@contextlib.contextmanager
def _local_workers(url: str, count: int, work_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    names = [f"local-{os.getpid()}-{number}" for number in range(1, count + 1)]
    processes = [
        runner.spawn(
            [sys.executable, "-m", "ute.worker", "--redis-url", url, "--name", name],
            log_path=work_dir / f"{name}.log",
        )
        for name in names
    ]
    finished = False
    try:
        if processes:
            _wait_until_registered(state.connect(url), names, processes, work_dir)
            log.info("started %d local workers", len(processes))
        yield processes
        finished = True
    finally:
        for process in processes:
            runner.stop(process, grace_seconds=30, cold=not finished)


def _wait_until_registered(
    connection: redis.Redis, names: Sequence[str], processes: Sequence[subprocess.Popen[bytes]],
    work_dir: Path,
) -> None:  # fmt: skip
    """Queue nothing before the local workers listen, so every one of them gets chunks."""
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not set(names) <= {worker.name for worker in Worker.all(connection=connection)}:
        if any(process.poll() is not None for process in processes):
            raise UteError(f"a local worker exited at start; see its log in {work_dir}")
        if time.monotonic() > deadline:
            raise UteError(f"local workers did not start within {WORKER_START_SECONDS} s")
        time.sleep(0.1)


def _wait_for_chunks(
    connection: redis.Redis,
    job_ids: Sequence[str],
    chunks: Sequence[plan.Chunk],
    name: str,
    local_workers: Sequence[subprocess.Popen[bytes]],
    work_dir: Path,
) -> None:
    total_frames = sum(chunk.frames for chunk in chunks)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} frames"),
        TextColumn("{task.fields[chunks]}"),
        TextColumn("{task.fields[fps]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(name, total=total_frames, chunks="", fps="")
        reported_done = 0
        while True:
            jobs = Job.fetch_many(list(job_ids), connection=connection, serializer=JSONSerializer)
            done_frames, done_chunks, running_fps = 0, 0, 0.0
            for job, chunk in zip(jobs, chunks, strict=True):
                status = job.get_status(refresh=False) if job else None
                if status == JobStatus.FINISHED:
                    done_frames += chunk.frames
                    done_chunks += 1
                elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, None):
                    raise EncodeError(_failure_reason(job, chunk, name))
                elif status == JobStatus.STARTED:
                    done_frames += min(chunk.frames, int(job.meta.get("frames_done", 0)))
                    running_fps += float(job.meta.get("fps", 0.0))
            progress.update(
                task,
                completed=done_frames,
                chunks=f"{done_chunks}/{len(chunks)} chunks",
                fps=f"{running_fps:.1f} fps",
            )
            if done_chunks > reported_done:
                reported_done = done_chunks
                log.debug("%s: %d of %d chunks done", name, done_chunks, len(chunks))
            if done_chunks == len(chunks):
                return
            if local_workers and all(p.poll() is not None for p in local_workers):
                raise EncodeError(f"every local worker has exited; see their logs in {work_dir}")
            time.sleep(POLL_SECONDS)


def _failure_reason(job: Job | None, chunk: plan.Chunk, name: str) -> str:
    if job is None:
        return f"{name}: the job for chunk {chunk.index} vanished from Redis"
    lines = [line for line in (job.latest_result().exc_string if job.latest_result() else "")
             .splitlines() if line.strip()]  # fmt: skip
    last = lines[-1] if lines else f"chunk {chunk.index} {job.get_status(refresh=False)}"
    # "ute.errors.EncodeError: chunk 3 of ...": the user needs the part after the class name.
    return last.split(": ", 1)[1] if ": " in last and last.split(":")[0].count(".") else last


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
