"""`ute status`, `ute logs` and `ute dashboard` against a real service, workers and Redis."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import psutil
import pytest
from conftest import run_ute, spawn, wait_for
from media import make_clip
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from ute import state, submit
from ute.jobs import ChunkSpec, FileSpec
from ute.redis_server import free_port

pytestmark = pytest.mark.slow


def test_status_json_tui_and_logs_during_a_real_encode(tmp_path: Path, clean_redis: str) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    clip = make_clip(tmp_path / "status clip.mkv", seconds=20, size="640x360", gop=48)
    spawn([sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
           "--plugins", "/nonexistent", "--settle-seconds", "1", "--workers", "2", "--redis-url", clean_redis,
           "--preset", "slow", "--chunk-frames", "96"], log_path=tmp_path / "serve.log")  # fmt: skip
    clip.rename(inbox / clip.name)

    def busy_snapshot() -> dict | None:
        run = run_ute("status", "--json", "--redis-url", clean_redis)
        snap = json.loads(run.stdout) if run.returncode == 0 else None
        if not snap or snap["swarm_fps"] <= 0 or not snap["jobs"]:
            return None
        busy = [w for w in snap["workers"] if w["state"] == "busy" and w["fps"] > 0]
        return snap if busy and snap["jobs"][0]["frames_done"] > 0 else None

    snap = wait_for(busy_snapshot, "a busy worker, frames done and swarm fps in ute status --json")
    job = snap["jobs"][0]
    assert job["source"].endswith("status clip.mkv") and job["state"] == "encoding"
    assert job["frames_total"] == 480 and job["chunks_total"] == 5
    worker = next(w for w in snap["workers"] if w["state"] == "busy")
    assert worker["chunk"]["index"] in range(5) and worker["host"] == socket.gethostname()
    assert worker["cpu_percent"] is not None and worker["memory_bytes"] > 0

    if shutil.which("tmux"):
        session = f"ute-status-{tmp_path.name}"
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                        sys.executable, "-m", "ute.cli", "status", "--redis-url", clean_redis], check=True)
        def screen_with_progress() -> str | None:
            text = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout
            return text if "status clip" in text and "━" in text else None

        try:
            screen = wait_for(screen_with_progress, "the file and a progress bar on the tmux screen", 60)
            assert "worker" in screen and "fps" in screen and job["id"] in screen
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
            wait_for(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                            capture_output=True).returncode != 0, "q to quit", 10)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

    wait_for(lambda: (inbox / "done" / "status clip.mkv").exists(), "the file to finish")
    logs = run_ute("logs", job["id"], "--chunk", "0", "--redis-url", clean_redis, "--outbox", str(outbox))
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.startswith(f"== file {job['id']}: status clip.mkv\n"), logs.stdout
    assert "chunk 0" in logs.stdout and "encoded 96 frames" in logs.stdout
    assert "== chunk 1" not in logs.stdout
    assert worker["chunk"]["file_id"] == job["id"] and worker["chunk"]["work_id"].startswith(f"{job['id']}-")
    history = run_ute("history", "--outbox", str(outbox))
    assert job["id"] in history.stdout, history.stdout


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError:
        return 0, b""  # not listening yet


def test_dashboard_needs_credentials_and_listens_on_loopback(tmp_path: Path, clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    for name in state.QUEUES:  # queues with a UTE job whose source has a hostile name
        file = FileSpec("/v/<script>alert(1)</script>.mkv", 0, "/w", {})
        work_id = state.work_id(state.fingerprint(file.source, len(name), 0), "{}")
        submit.submit_chunks(connection, file, [ChunkSpec(work_id, 0, 0, 10, 0)], name)
    port = free_port()
    dashboard = spawn([sys.executable, "-m", "ute.cli", "dashboard", "--port", str(port),
                       "--redis-url", clean_redis, "--username", "admin", "--password", "s3cret"],
                      log_path=tmp_path / "dashboard.log")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(base + "/")[0] in (200, 401), "the dashboard", 30)

    assert _get(base + "/")[0] == 401
    assert _get(base + "/", ("admin", "wrong"))[0] == 401
    assert _get(base + "/", ("admin", "s3cret"))[0] == 200
    status, body = _get(base + "/rq/0/data/queues.json", ("admin", "s3cret"))
    assert status == 200
    assert {q["name"] for q in json.loads(body)["queues"]} >= {"high", "low"}
    status, body = _get(base + "/rq/0/data/jobs/high/queued/10/asc/1.json", ("admin", "s3cret"))
    assert status == 200 and b"<script>" not in body and b"alert(" not in body

    listening = [c for c in psutil.Process(dashboard.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]  # fmt: skip
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    Queue("high", connection=connection, serializer=JSONSerializer).empty()


def test_a_dead_worker_leaves_the_status_within_seconds(tmp_path: Path, clean_redis: str) -> None:
    from conftest import run_ute, start_worker, wait_for

    worker = start_worker(clean_redis, tmp_path / "worker.log", "--name", "short-lived")

    def names() -> set[str]:
        snap = json.loads(run_ute("status", "--json", "--redis-url", clean_redis).stdout)
        return {w["name"] for w in snap["workers"]}

    wait_for(lambda: "short-lived" in names(), "the worker to appear", 30)
    for process in [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]:
        process.kill()
    wait_for(lambda: "short-lived" not in names(), "the dead worker to drop out (5 s presence key)", 30)


# A worker busy with a JSON job for a few seconds, as a ute-worker with a chunk.
BUSY_WORKER = """
import sys
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from ute import state
connection = state.connect(sys.argv[1])
SimpleWorker([state.queue("low", connection)], connection=connection, name="busy",
             serializer=JSONSerializer).work(burst=True)
"""


def test_the_dashboard_lists_both_queues_at_once_and_its_workers_page_loads_while_one_is_busy(
    tmp_path: Path, clean_redis: str
) -> None:  # fmt: skip
    """Queue `high` used to be missing until a job went through it, and the Workers page answered
    500 (rq-dashboard unpickled the busy worker's JSON job)."""
    connection = state.connect(clean_redis)
    low = state.queue(state.QUEUE_LOW, connection)
    job = low.enqueue("time.sleep", 4, description="encode chunk 0 of file 0123456789abcdef")  # JSON
    spawn([sys.executable, "-c", BUSY_WORKER, clean_redis], log_path=tmp_path / "worker.log")

    def busy() -> bool:
        workers = Worker.all(connection=connection, serializer=JSONSerializer)
        return any(w.name == "busy" and w.get_current_job_id() == job.id for w in workers)

    wait_for(busy, "the worker to be busy", 30)
    connection.srem(Queue.redis_queues_keys, state.queue(state.QUEUE_HIGH, connection).key)
    port = free_port()
    spawn([sys.executable, "-m", "ute.cli", "dashboard", "--port", str(port), "--redis-url", clean_redis],
          log_path=tmp_path / "dashboard.log")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(base + "/")[0] == 200, "the dashboard", 30)
    status, body = _get(base + "/rq/0/data/queues.json")
    assert status == 200 and {q["name"] for q in json.loads(body)["queues"]} >= {"high", "low"}
    status, body = _get(base + "/rq/0/data/workers.json")
    assert status == 200, body[-500:]
    [worker] = [w for w in json.loads(body)["workers"] if w["name"] == "busy"]
    assert worker["current_job"]["job_id"] == job.id
    assert "of file 0123456789abcdef" in worker["current_job"]["description"]


def test_the_dashboard_says_in_one_line_when_its_port_is_taken_or_redis_is_down(clean_redis: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_ute("dashboard", "--port", port, "--redis-url", clean_redis, timeout=60)
    assert result.returncode == 1 and "Running on" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(f"ute: error: cannot listen on 127.0.0.1:{port}")
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    result = run_ute("dashboard", "--port", str(free_port()), "--redis-url", nobody, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"ute: error: cannot reach Redis at {nobody}: is `ute serve` running? " \
                                    "(or pass --redis-url)"  # fmt: skip
