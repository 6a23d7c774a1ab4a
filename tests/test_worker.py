"""ute-worker: a real worker against a real Redis runs UTE's jobs and nothing else, finds mapped paths,
and leaves chunks it failed to others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import redis
from conftest import exited, spawn, start_worker, wait_for
from media import make_clip
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from ute import runner, state, submit
from ute.jobs import ALLOWED_JOB_FUNCTIONS, ChunkSpec, FileSpec, segment_name
from ute.probe import count_frames, probe
from ute.settings import EncodeSettings
from ute.worker import PASS_ON_SECONDS, LeftToOthers, UteWorker, _tell_to_stop


def test_foreign_functions_never_run_json_or_pickled(clean_redis: str, tmp_path: Path) -> None:
    connection = state.connect(clean_redis)
    markers = [tmp_path / f"ran-{n}" for n in range(4)]
    json_high = Queue("high", connection=connection, serializer=JSONSerializer)
    json_low = Queue("low", connection=connection, serializer=JSONSerializer)
    pickled_high = Queue("high", connection=connection)
    pickled_low = Queue("low", connection=connection)
    job_ids = [
        json_high.enqueue("os.system", f"touch '{markers[0]}'").id,
        json_low.enqueue("os.system", f"touch '{markers[1]}'").id,
        pickled_high.enqueue(os.system, f"touch '{markers[2]}'").id,
        pickled_low.enqueue(os.system, f"touch '{markers[3]}'").id,
    ]
    worker = start_worker(clean_redis, tmp_path / "worker.log", "--burst")
    assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()
    assert not any(marker.exists() for marker in markers)
    for job_id in job_ids[:2]:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert job.get_status() == "failed"
    assert json_high.count == json_low.count == 0


def test_a_worker_finds_the_files_under_its_own_mount_point(clean_redis: str, tmp_path: Path) -> None:
    """The coordinator's paths do not exist on this 'machine'; --path-map says where they are."""
    coordinator_root = "/coordinator-only/media"
    settings = EncodeSettings(preset="ultrafast").to_json()
    file_id = state.fingerprint(f"{coordinator_root}/a clip.mkv", 1, 1)
    work_id = state.work_id(file_id, json.dumps(settings))
    work = tmp_path / "media" / ".ute-work" / work_id
    work.mkdir(parents=True)
    source = make_clip(tmp_path / "media" / "a clip.mkv", seconds=2, gop=24)
    info = probe(source)
    coordinator_work = f"{coordinator_root}/.ute-work/{work_id}"
    file = FileSpec(f"{coordinator_root}/a clip.mkv", info.video_index, coordinator_work, settings)
    connection = state.connect(clean_redis)
    [job_id] = submit.submit_chunks(connection, file, [ChunkSpec(work_id, 0, 0, 24, 0)], state.QUEUE_LOW)
    events = state.chunk_events(connection)
    worker = start_worker(clean_redis, tmp_path / "worker.log", "--burst",
                          "--path-map", f"{coordinator_root}={tmp_path / 'media'}")  # fmt: skip
    assert worker.wait(timeout=120) == 0, (tmp_path / "worker.log").read_text()
    assert count_frames(work / segment_name(0)) == 24
    # The coordinator is told the moment the chunk ended, rather than finding out at its next poll.
    said = [events.get_message(timeout=1) for _ in range(3)]  # the first: its subscription, ignored
    assert {"type": "message", "pattern": None, "channel": state.CHUNK_EVENTS_CHANNEL.encode(),
            "data": job_id.encode()} in said  # fmt: skip
    events.close()
    # What rq-dashboard shows of the chunk leads back to the file `ute status` lists.
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    assert job.id == f"ute-{file_id}-{work_id[-8:]}-chunk-00000"
    assert job.description == f"encode chunk 0 of file {file_id}"


def test_a_chunk_that_failed_here_is_left_to_others_for_a_while_only() -> None:
    left = LeftToOthers()
    both, alone = (lambda: ["broken", "good"]), (lambda: ["broken"])
    assert not left.leave("j1", [], "broken", both, now=0.0), "never failed here: run it"
    assert left.leave("j1", ["broken"], "broken", both, now=0.0)
    assert left.leave("j1", ["broken"], "broken", both, now=PASS_ON_SECONDS - 1)
    assert not left.leave("j1", ["broken"], "broken", both, now=PASS_ON_SECONDS), "waited long enough"
    assert not left.leave("j2", ["broken"], "broken", alone, now=0.0), "nobody else to take it"
    assert not left.leave("j3", ["broken", "good"], "broken", both, now=0.0), "failed everywhere"
    assert left.leave("j4", ["broken"], "broken", both, now=1000.0)
    assert set(left.since) == {"j4"}, "chunks taken by others long ago are forgotten"


def test_chunks_are_submitted_under_the_name_workers_allow() -> None:
    assert submit.ENCODE_CHUNK_FUNCTION in ALLOWED_JOB_FUNCTIONS


# A coordinator as far as its local workers can tell: it starts one and waits to be killed.
STAND_IN_COORDINATOR = """
import sys, time
from pathlib import Path
from ute.localworkers import local_workers
with local_workers(sys.argv[1], 1, Path(sys.argv[2])):
    print("workers started", flush=True)
    time.sleep(600)
"""


def test_a_local_worker_exits_when_its_coordinator_is_killed(clean_redis: str, tmp_path: Path) -> None:
    log = tmp_path / "coordinator.log"
    coordinator = spawn([sys.executable, "-c", STAND_IN_COORDINATOR, clean_redis, str(tmp_path)], log)
    wait_for(lambda: "workers started" in log.read_text(), "the local worker", log=log, process=coordinator)
    [worker] = psutil.Process(coordinator.pid).children()
    coordinator.send_signal(signal.SIGKILL)
    wait_for(lambda: exited(worker), "the worker to exit", timeout=5)
    worker_log = next(tmp_path.glob("local-*.log")).read_text()
    assert f"its parent (pid {coordinator.pid}) is gone" in worker_log


def test_a_worker_stops_listening_without_waiting_out_the_listeners_read(clean_redis: str) -> None:
    """redis-py 8.2's pub/sub thread joins in stop(): told to stop that way before the unsubscribe
    that wakes it, every worker's stop waited out rq's 60 s read (and `ute encode` its 30 s grace)."""
    worker = UteWorker([state.queue(state.QUEUE_LOW, state.connect(clean_redis))],
                       name="listener", connection=state.connect(clean_redis))  # fmt: skip
    worker.subscribe()
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopping.start()
    wait_for(lambda: not stopping.is_alive(), "the worker to stop listening (not its 60 s read)", timeout=30)
    assert not worker.pubsub_thread.is_alive()


class OldStyleListener:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


class NewStyleListener(OldStyleListener):
    def stop(self, timeout: float | None = None) -> None:
        assert timeout == 0, "told to stop, not waited for"
        self.stopped = True


def test_a_listener_is_told_to_stop_by_any_redis_py() -> None:
    for listener in (OldStyleListener(), NewStyleListener()):
        _tell_to_stop(listener)
        assert listener.stopped


def _registered_pids(connection: redis.Redis, names: set[str]) -> dict[str, int] | None:
    workers = {worker.name: worker.pid for worker in Worker.all(connection=connection)}
    return workers if names <= set(workers) else None


@pytest.mark.parametrize("stopped_by", ["its process group", "a signal to it alone"])
def test_one_process_forks_a_worker_per_name_each_with_its_own_log(
    clean_redis: str, tmp_path: Path, stopped_by: str
) -> None:  # fmt: skip
    launcher = start_worker(clean_redis, tmp_path / "launcher.log", "--name", "first", "--name", "second",
                            "--log-folder", str(tmp_path))  # fmt: skip
    connection = state.connect(clean_redis)
    # Stopped the moment both are registered, before rq has put its signal handlers in: the stop
    # waits for them (it killed a worker outright in 4 of 5 tries before).
    pids = wait_for(lambda: _registered_pids(connection, {"first", "second"}), "both workers",
                    log=tmp_path / "launcher.log", process=launcher, every=0.001)  # fmt: skip
    if stopped_by == "its process group":  # as `ute encode` stops it
        runner.stop([launcher])
    else:  # as systemd's KillMode=mixed does: it passes the signal on to each worker
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
    assert launcher.returncode == 0, (tmp_path / "launcher.log").read_text()
    assert "encoder:" in (tmp_path / "launcher.log").read_text(), "what it did before forking"
    for name in ("first", "second"):
        assert f"Worker {name}: started with PID {pids[name]}" in (tmp_path / f"{name}.log").read_text()
    assert not any(psutil.pid_exists(pid) for pid in pids.values())
    assert set(Worker.all_keys(connection=connection)) == set(), "both left the farm's register"
    for name in ("first", "second"):  # each got the signal once: a second would be a cold stop
        said = (tmp_path / f"{name}.log").read_text()
        assert "warm shut down requested" in said and "cold shut down" not in said


def test_forked_workers_exit_with_their_coordinator_or_the_process_that_forked_them(
    clean_redis: str, tmp_path: Path
) -> None:  # fmt: skip
    connection = state.connect(clean_redis)
    for killed in ("coordinator", "launcher"):
        connection.flushdb()
        folder = tmp_path / killed
        folder.mkdir()
        coordinator = spawn([sys.executable, "-c", STAND_IN_COORDINATOR_OF_TWO, clean_redis, str(folder)],
                            folder / "coordinator.log")  # fmt: skip
        pids = wait_for(lambda: _registered_pids(connection, {"one", "two"}), "both workers",
                        log=folder / "coordinator.log", process=coordinator)  # fmt: skip
        [launcher] = psutil.Process(coordinator.pid).children()
        workers = [psutil.Process(pid) for pid in pids.values()]
        victim = coordinator.pid if killed == "coordinator" else launcher.pid
        os.kill(victim, signal.SIGKILL)
        for process in [launcher, *workers] if killed == "coordinator" else workers:
            wait_for(lambda process=process: exited(process), f"pid {process.pid} to exit after its {killed}")
        said = f"its parent (pid {victim}) is gone"
        assert said in (folder / ("one.log" if killed == "coordinator" else "two.log")).read_text()
        coordinator.kill()


# A coordinator as `ute encode` starts its local workers: one process that forks them.
STAND_IN_COORDINATOR_OF_TWO = """
import sys, time
from pathlib import Path
from ute.encode_start import spawn_local_workers
spawn_local_workers(sys.argv[1], ["one", "two"], Path(sys.argv[2]))
time.sleep(600)
"""


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ""])
def test_a_worker_name_that_would_put_its_log_elsewhere_is_refused(tmp_path: Path, name: str) -> None:
    result = subprocess.run([sys.executable, "-m", "ute.worker", "--name", "fine", "--name", name,
                             "--log-folder", str(tmp_path / "logs")], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"ute-worker: error: --name {name!r}: with --log-folder")
    assert list(tmp_path.iterdir()) == []


# A forked worker as it starts: stop signals blocked, and one already waiting.
STOPPED_BEFORE_ITS_HANDLERS = """
import os, signal, sys
from ute import state
from ute.worker import STOP_SIGNALS, UteWorker
connection = state.connect(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
os.kill(os.getpid(), signal.SIGTERM)
worker = UteWorker([state.queue(state.QUEUE_LOW, connection)], name="early", connection=connection)
worker.work()
print("stopped warmly", flush=True)
"""


def test_a_stop_signal_before_rqs_handlers_is_a_warm_stop(clean_redis: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", STOPPED_BEFORE_ITS_HANDLERS, clean_redis],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0 and "stopped warmly" in result.stdout, result.stderr
    assert "warm shut down requested" in result.stdout and "stopping on request" in result.stdout  # rq's log
    assert Worker.all_keys(connection=state.connect(clean_redis)) == [], "left the register (rq's teardown)"


def test_a_log_folder_that_cannot_be_written_is_one_line_before_any_worker_starts(
    clean_redis: str, tmp_path: Path
) -> None:  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "ute.worker", "--redis-url", clean_redis, "--name", "a",
                             "--name", "b", "--log-folder", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == \
        f"ute-worker: error: --log-folder {tmp_path / 'missing'}: No such file or directory"
    assert Worker.all_keys(connection=state.connect(clean_redis)) == []
