"""Fault tolerance with real processes: dead workers, coastdown, Redis restarts, orphaned horses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import failing_ffmpeg, finished_segments, run_ute, spawn, start_worker, wait_for
from media import frame_hashes, make_clip
from rq import Worker
from rq.job import Job
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer
from tls_proxy import tls_front

from ute import monitor, pipeline, runner, state, submit, tools
from ute.probe import probe
from ute.redis_server import free_port, private_redis_server
from ute.settings import EncodeSettings

pytestmark = pytest.mark.slow

# Lossless (so frames can be compared) and slow enough that a chunk is caught while busy.
ENCODE = ("--x265-params", "lossless=1", "--preset", "slow", "--chunk-frames", "48")


def busy_worker(connection, names: set[str]) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
    """(worker name, job id) of one of the named workers that is encoding a chunk."""
    for worker in Worker.all(connection=connection):
        job_id = worker.get_current_job_id()
        if worker.name in names and job_id:
            return worker.name, job_id
    return None


def encoding_family(pid: int) -> list[psutil.Process] | None:
    """A worker with everything below it, once an encoder (libx265) runs there."""
    with contextlib.suppress(psutil.NoSuchProcess):
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        if any("libx265" in process.cmdline() for process in family):
            return family
    return None


def encode(source: Path, output: Path, redis_url: str) -> subprocess.Popen[bytes]:
    """`ute encode` as a coordinator only: the test starts and kills the workers itself."""
    return spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                         "--workers", "0", "--redis-url", redis_url, *ENCODE],
                        log_path=output.with_suffix(".log"))  # fmt: skip


def chunk_of(job_id: str) -> str:
    """The chunk a job id belongs to, whatever its generation."""
    return job_id.split("-g")[0]


def test_a_sigkilled_workers_chunk_moves_to_another_worker(tmp_path: Path, clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    source = make_clip(tmp_path / "movie.mkv", seconds=8, gop=24, audio_tracks=1)
    output = tmp_path / "out.mkv"
    coordinator = encode(source, output, clean_redis)
    first = start_worker(clean_redis, tmp_path / "first.log", "--name", "first")
    _, job_id = wait_for(lambda: busy_worker(connection, {"first"}), "a busy worker")  # type: ignore[misc]
    second = start_worker(clean_redis, tmp_path / "second.log", "--name", "second")
    wait_for(lambda: "second" in {w.name for w in Worker.all(connection=connection)}, "worker two")

    victims = wait_for(lambda: encoding_family(first.pid), "the busy worker's encoder")
    for process in victims:  # the worker, its work horse and its ffmpeg
        process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    def taken_over() -> bool:
        worker_job = busy_worker(connection, {"second"})
        return worker_job is not None and chunk_of(worker_job[1]) == chunk_of(job_id)

    wait_for(taken_over, "the dead worker's chunk to run on the other worker", timeout=60)
    print(f"requeue latency: {time.monotonic() - killed_at:.1f} s")
    assert coordinator.wait(timeout=300) == 0, output.with_suffix(".log").read_text()
    runner.stop([second])
    assert frame_hashes(output) == frame_hashes(source)


def test_sigterm_lets_a_busy_worker_finish_its_chunk_then_exit(tmp_path: Path, clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    source = make_clip(tmp_path / "movie.mkv", seconds=4, gop=24)
    output = tmp_path / "out.mkv"
    coordinator = encode(source, output, clean_redis)
    worker = start_worker(clean_redis, tmp_path / "worker.log", "--name", "coasting")
    _, job_id = wait_for(lambda: busy_worker(connection, {"coasting"}), "a busy worker")  # type: ignore[misc]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    assert job.get_status() == "finished" and job.worker_name == "coasting"
    assert coordinator.poll() is None  # one chunk done, one left: the worker took no new one

    finisher = start_worker(clean_redis, tmp_path / "finisher.log")
    assert coordinator.wait(timeout=300) == 0, output.with_suffix(".log").read_text()
    runner.stop([finisher])
    assert frame_hashes(output) == frame_hashes(source)


def start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    return spawn([tools.redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                         "--dir", str(folder), "--appendonly", "yes", "--save", ""],
                        log_path=folder / "redis.log")  # fmt: skip


def test_a_redis_restart_mid_file_still_gives_a_correct_output(tmp_path: Path) -> None:
    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis_process = start_redis(redis_dir, port)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _pings(url), "Redis")
    source = make_clip(tmp_path / "movie.mkv", seconds=10, gop=24, audio_tracks=1)
    output = tmp_path / "out.mkv"
    coordinator = encode(source, output, url)
    workers = [start_worker(url, tmp_path / f"w{n}.log") for n in range(2)]
    work = tmp_path / ".ute-work"
    wait_for(lambda: len(finished_segments(work)) >= 1, "a first finished chunk")

    redis_process.send_signal(signal.SIGKILL)
    redis_process.wait()
    time.sleep(3)
    redis_process = start_redis(redis_dir, port)
    try:
        assert coordinator.wait(timeout=300) == 0, output.with_suffix(".log").read_text()
        assert frame_hashes(output) == frame_hashes(source)
        assert all(worker.poll() is None for worker in workers), "workers must survive the restart"
    finally:
        runner.stop(workers)
        runner.stop([redis_process])


def test_a_private_redis_started_again_on_its_folder_keeps_what_it_was_told(tmp_path: Path) -> None:
    """It stops with a SHUTDOWN (its SIGTERM waits for its next tick), which flushes its append-only file."""
    port = free_port()
    with private_redis_server(tmp_path / "redis", port=port) as server:
        state.connect(server.url).rpush("ute:test", "queued chunk")
    assert server.process is not None and server.process.returncode == 0
    with private_redis_server(tmp_path / "redis", port=port) as server:
        assert state.connect(server.url).lrange("ute:test", 0, -1) == [b"queued chunk"]
    said = (tmp_path / "redis" / "redis.log").read_text()
    assert said.count("User requested shutdown") == 2 and "Received SIGTERM" not in said


def _pings(url: str) -> bool:
    try:
        return bool(state.connect(url).ping())
    except Exception:
        return False


def test_sigkill_of_a_workers_main_process_alone_commits_its_chunk_once(
    tmp_path: Path, clean_redis: str
) -> None:
    connection = state.connect(clean_redis)
    source = make_clip(tmp_path / "movie.mkv", seconds=6, gop=24)
    output = tmp_path / "out.mkv"
    coordinator = encode(source, output, clean_redis)
    first = start_worker(clean_redis, tmp_path / "first.log", "--name", "first")
    _, job_id = wait_for(lambda: busy_worker(connection, {"first"}), "a busy worker")  # type: ignore[misc]
    horse = wait_for(lambda: psutil.Process(first.pid).children(), "the work horse")[0]  # type: ignore[index]
    first.send_signal(signal.SIGKILL)  # the main process only: the horse lives on (setpgrp)
    first.wait()
    assert horse.is_running()
    second = start_worker(clean_redis, tmp_path / "second.log", "--name", "second")
    assert coordinator.wait(timeout=300) == 0, output.with_suffix(".log").read_text()
    runner.stop([second])
    assert frame_hashes(output) == frame_hashes(source)
    work_id, index = job_id.split("-chunk-")[0].removeprefix("ute-"), int(chunk_of(job_id).split("-")[-1])
    assert state.commit_count(connection, state.chunk_key(work_id, index)) == 1


def test_a_redis_with_a_password_and_tls_works_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    redis_process = spawn([tools.redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                                  "--requirepass", "s3cret", "--save", ""])  # fmt: skip
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    source = make_clip(tmp_path / "movie.mkv", seconds=2)

    def encode_through(redis_url: str, output: Path) -> None:
        argv = [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                "--workers", "1", "--redis-url", redis_url, "--preset", "ultrafast"]  # fmt: skip
        run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert len(frame_hashes(output)) == 48
        assert "s3cret" not in run.stderr

    try:
        wait_for(lambda: _pings(url), "Redis")
        assert not _pings(f"redis://127.0.0.1:{port}/0"), "the password must be required"
        encode_through(url, tmp_path / "plain.mkv")
        with tls_front(port, tmp_path) as (tls_port, ca_file):
            tls_url = f"rediss://:s3cret@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca_file}"
            assert _pings(tls_url)
            assert not _pings(f"rediss://:s3cret@127.0.0.1:{tls_port}/0"), "an unknown CA is refused"
            encode_through(tls_url, tmp_path / "tls.mkv")
            status = run_ute("status", "--json", "--redis-url", tls_url)
            assert status.returncode == 0 and "workers" in json.loads(status.stdout), status.stderr
    finally:
        runner.stop([redis_process])


def test_a_stuck_encoder_is_stopped_and_its_chunk_runs_elsewhere(tmp_path: Path, clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    source = make_clip(tmp_path / "movie.mkv", seconds=4, gop=24)
    output = tmp_path / "out.mkv"
    coordinator = spawn(
        [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output), "--workers", "0",
         "--redis-url", clean_redis, *ENCODE],
        log_path=tmp_path / "encode.log", env={**os.environ, "UTE_STUCK_SECONDS": "3"},
    )  # fmt: skip
    first = start_worker(clean_redis, tmp_path / "first.log", "--name", "first")
    wait_for(lambda: busy_worker(connection, {"first"}), "a busy worker")
    encoder = wait_for(lambda: [p for p in psutil.Process(first.pid).children(recursive=True)
                                if "libx265" in p.cmdline()], "the encoder")[0]  # type: ignore[index]
    encoder.send_signal(signal.SIGSTOP)  # alive, heartbeating, but making no progress
    second = start_worker(clean_redis, tmp_path / "second.log", "--name", "second")
    assert coordinator.wait(timeout=300) == 0, (tmp_path / "encode.log").read_text()
    coordinator_log = (tmp_path / "encode.log").read_text()
    assert "made no progress" in coordinator_log, coordinator_log + (tmp_path / "first.log").read_text()
    assert not encoder.is_running() or encoder.status() == psutil.STATUS_ZOMBIE
    runner.stop([first, second])
    assert frame_hashes(output) == frame_hashes(source)


def test_a_chunk_that_failed_on_one_worker_is_retried_on_another(tmp_path: Path, clean_redis: str) -> None:
    """A machine whose encoder is broken fails each chunk once; the retries go to the good one
    (with nobody to prefer, the broken worker would fail the same chunk four times)."""
    broken_ffmpeg = failing_ffmpeg(tmp_path, "this machine's encoder is broken")
    connection = state.connect(clean_redis)
    present = lambda *names: set(names) <= {w["name"] for w in state.live_workers(connection)}  # noqa: E731
    broken = spawn([sys.executable, "-m", "ute.worker", "--redis-url", clean_redis, "--name", "broken"],
                   tmp_path / "broken.log", env={**os.environ, "UTE_FFMPEG": str(broken_ffmpeg)})  # fmt: skip
    wait_for(lambda: present("broken"), "the broken worker")
    start_worker(clean_redis, tmp_path / "good.log", "--name", "good")
    wait_for(lambda: present("broken", "good"), "the good worker")

    # The good worker needs seconds per chunk, the broken one fails at once: the broken one is idle
    # whenever a retry comes up, which is when it must leave the chunk alone.
    source = make_clip(tmp_path / "movie.mkv", seconds=8, gop=48, size="640x360")
    output = tmp_path / "out.mkv"
    coordinator = spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                         "--workers", "0", "--redis-url", clean_redis, "--chunk-frames", "48",
                         "--preset", "slow"], log_path=tmp_path / "encode.log",
                        env={**os.environ, "UTE_RETRY_DELAYS": "0.2,0.2,0.2"})  # fmt: skip
    assert coordinator.wait(timeout=300) == 0, (tmp_path / "encode.log").read_text()[-3000:]
    assert broken.poll() is None

    registry = FinishedJobRegistry(state.QUEUE_LOW, connection=connection, serializer=JSONSerializer)
    finished = Job.fetch_many(registry.get_job_ids(), connection=connection, serializer=JSONSerializer)
    assert len(finished) == 4 and all(job is not None and job.worker_name == "good" for job in finished)
    failures = [job.meta.get("failed_on", []) for job in finished if job is not None]
    assert ["broken"] in failures, "the broken worker took at least one chunk"
    assert all(failed_on in ([], ["broken"]) for failed_on in failures), failures
    assert "leaving it to another worker" in (tmp_path / "broken.log").read_text()


def test_a_chunk_that_fails_the_same_way_on_two_workers_fails_the_file_without_more_retries(
    tmp_path: Path, clean_redis: str
) -> None:
    """A failure no retry can mend costs two tries, not four spread over two and a half minutes."""
    ffmpeg = failing_ffmpeg(tmp_path, "x265 [error]: this input can never be encoded")
    source = make_clip(tmp_path / "movie.mkv", seconds=2, gop=24)
    run = subprocess.run(
        [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(tmp_path / "out.mkv"),
         "--workers", "2", "--redis-url", clean_redis, "--preset", "ultrafast"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "UTE_FFMPEG": str(ffmpeg), "UTE_RETRY_DELAYS": "0.5,0.5,0.5"},
    )  # fmt: skip
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("ute: error:")]
    assert len(errors) == 1 and errors[0].endswith("can never be encoded (failed 2 times)"), run.stderr
    assert not (tmp_path / "out.mkv").exists()


def test_a_dead_workers_chunk_is_requeued_after_its_rq_records_expired(
    tmp_path: Path, clean_redis: str
) -> None:
    """rq 3 keeps an execution's record only while it is refreshed (about 90 s); the monitor's
    requeue used to crash `ute serve` with "Execution ... not found" after a longer outage."""
    connection = state.connect(clean_redis)
    source = make_clip(tmp_path / "movie.mkv", seconds=4, gop=48, size="640x360")
    prepared = pipeline.prepare(probe(source), EncodeSettings(preset="slow", chunk_frames=48),
                                tmp_path / ".ute-work")  # fmt: skip
    prepared.work_dir.mkdir(parents=True)
    submit.submit_chunks(connection, prepared.file_spec, prepared.specs)
    worker = start_worker(clean_redis, tmp_path / "worker.log", "--name", "doomed")
    _, job_id = wait_for(lambda: busy_worker(connection, {"doomed"}), "a busy worker")  # type: ignore[misc]
    # Its encoder running: a work horse forked after a look at the worker's children would live on
    # (in a process group of its own), finish the chunk and leave nothing to requeue.
    family = wait_for(lambda: encoding_family(worker.pid), "the busy worker's encoder")
    for process in family:
        process.send_signal(signal.SIGKILL)
    expired = list(connection.scan_iter(f"rq:execution:{job_id}:*"))
    assert expired
    connection.delete(*expired)
    watchdog = monitor.ChunkMonitor(connection)
    # Swept as ute serve does, until the heartbeat has lapsed and the start grace has passed.
    requeued = wait_for(lambda: watchdog.sweep(state.current_chunk_jobs(connection, prepared.work_id,
                                                                        len(prepared.chunks))),
                        "the dead worker's chunk to be requeued", timeout=30)  # fmt: skip
    assert requeued == [job_id]
    front = state.queue(state.QUEUE_LOW, connection).get_job_ids()[0]
    assert chunk_of(front) == chunk_of(job_id) and front != job_id
