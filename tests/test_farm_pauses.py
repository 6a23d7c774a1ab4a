"""Redis that refuses writes and disks that fill up pause the farm with one clear line (in the log
and in `ute status`); it carries on by itself once they clear, and nothing fails for it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import finished_segments, run_ute, spawn, start_worker, wait_for
from media import frame_hashes, make_clip

from ute import farm, runner, state, tools
from ute.redis_server import free_port

pytestmark = pytest.mark.slow

LOSSLESS = ("--x265-params", "lossless=1", "--preset", "slow", "--chunk-frames", "48")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own, to be broken without harming the others'."""
    port = free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    process = spawn([tools.redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                     "--save", "", "--appendonly", "no"], log_path=tmp_path / "redis.log")  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _answers(url), "Redis")
    yield url
    runner.stop([process])


def _answers(url: str) -> bool:
    with contextlib.suppress(Exception):
        return bool(state.connect(url).ping())
    return False


def test_each_way_redis_refuses_writes_is_named_with_what_to_do(own_redis: str, tmp_path: Path) -> None:
    connection = state.connect(own_redis)
    assert farm.redis_problem(connection) is None

    connection.config_set("maxmemory-policy", "noeviction")
    connection.config_set("maxmemory", "1")
    assert "out of memory" in (farm.redis_problem(connection) or "")
    connection.config_set("maxmemory", "0")

    doomed = tmp_path / "doomed"
    doomed.mkdir()
    connection.config_set("dir", str(doomed))
    connection.config_set("stop-writes-on-bgsave-error", "yes")
    connection.config_set("save", "3600 1")  # Redis refuses writes only where it saves snapshots
    doomed.rmdir()  # the disk Redis saves to is gone
    connection.bgsave()
    wait_for(lambda: farm.redis_problem(connection), "a failed save", timeout=20)
    assert "cannot save its data" in (farm.redis_problem(connection) or "")
    (tmp_path / "mended").mkdir()
    connection.config_set("dir", str(tmp_path / "mended"))
    connection.bgsave()
    wait_for(lambda: farm.redis_problem(connection) is None, "a good save", timeout=20)
    connection.config_set("save", "")

    connection.replicaof("127.0.0.1", str(free_port()))  # a primary that is not there
    assert "read-only replica" in (farm.redis_problem(connection) or "")
    connection.replicaof("NO", "ONE")
    assert farm.redis_problem(connection) is None


def test_a_redis_out_of_memory_pauses_the_run_which_then_carries_on(own_redis: str, tmp_path: Path) -> None:
    connection = state.connect(own_redis)
    source = make_clip(tmp_path / "movie.mkv", seconds=8, gop=24)
    output = tmp_path / "out.mkv"
    log = tmp_path / "encode.log"
    coordinator = spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                         "--workers", "0", "--redis-url", own_redis, *LOSSLESS], log_path=log)  # fmt: skip
    worker = start_worker(own_redis, tmp_path / "worker.log", "--name", "steady")
    wait_for(lambda: finished_segments(tmp_path / ".ute-work"), "a first segment", process=coordinator)
    connection.config_set("maxmemory-policy", "noeviction")
    connection.config_set("maxmemory", "1")
    wait_for(lambda: "the farm is paused: Redis is out of memory" in log.read_text(), "the pause", log=log)
    status = run_ute("status", "--json", "--redis-url", own_redis)
    assert status.returncode == 0, status.stderr
    assert "out of memory" in json.loads(status.stdout)["paused"]
    shown = run_ute("status", "--once", "--redis-url", own_redis)
    assert "farm paused: Redis is out of memory" in shown.stdout, shown.stdout
    connection.config_set("maxmemory", "0")

    assert coordinator.wait(timeout=300) == 0, log.read_text()
    assert "Redis accepts writes again" in log.read_text()
    assert log.read_text().count("the farm is paused") == 1, "one line for the pause, not one per poll"
    assert frame_hashes(output) == frame_hashes(source)
    assert worker.poll() is None, "the worker waits for Redis instead of exiting"
    runner.stop([worker])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MB disk of its own (tmpfs), to fill up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small disk here (run as root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave_bytes: int) -> Path:
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    with ballast.open("wb") as out:
        for _ in range(max(0, free - leave_bytes) // 2**20):
            out.write(b"\0" * 2**20)
    return ballast


def test_a_full_disk_pauses_serve_and_no_chunk_is_counted_as_failed(small_disk: Path) -> None:
    """The disk fills up under a running encoder (and under the private Redis's append-only
    file): the farm pauses, the chunk is tried again uncounted once there is room, the file ends
    frame-exact."""
    inbox, outbox, log = small_disk / "inbox", small_disk / "outbox", small_disk.parent / "serve.log"
    source = make_clip(small_disk.parent / "movie.mkv", seconds=16, gop=24, size="640x360")
    serve = spawn(
        [sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
         "--plugins", "/nonexistent", "--settle-seconds", "1", "--workers", "1",
         "--redis-port", str(free_port()), *LOSSLESS],
        log_path=log, env={**os.environ, "UTE_MIN_FREE_MB": "8", "UTE_RETRY_DELAYS": "0.5"},
    )  # fmt: skip
    wait_for(inbox.exists, "the inbox", log=log, process=serve)
    (inbox / "movie.mkv").write_bytes(source.read_bytes())
    work = outbox / ".ute-work"
    # Any part file: ffmpeg buffers its first 32 KiB, and x265's lookahead holds back every packet
    # of a short chunk until its end, so a part file can stay empty for all but its last moment.
    wait_for(lambda: list(work.glob("*/*.part")), "an encoder writing its segment", log=log, process=serve)
    ballast = _fill(small_disk, leave_bytes=0)
    wait_for(lambda: "the farm is paused" in log.read_text(), "the pause", log=log, process=serve)
    status = run_ute("status", "--json", "--redis-url", _redis_url(log))
    assert json.loads(status.stdout)["paused"], status.stdout
    # The worker's log is on the full disk too: the encoder's end shows as its part file going.
    wait_for(lambda: not list(work.glob("*/*.part")), "the encoder to fail", log=log, process=serve)
    ballast.unlink()

    wait_for((inbox / "done" / "movie.mkv").exists, "the file to finish", log=log, process=serve, timeout=300)
    text = log.read_text()
    assert "the farm carries on" in text
    assert "failed:" not in text and "(failure" not in text, text
    assert frame_hashes(outbox / "movie.mkv") == frame_hashes(source)
    runner.stop([serve])


def _redis_url(serve_log: Path) -> str:
    line = next(line for line in serve_log.read_text().splitlines() if "remote workers: ute-worker" in line)
    return line.rsplit("--redis-url ", 1)[1].rstrip(")")


def test_serve_does_not_start_on_a_nearly_full_disk(small_disk: Path) -> None:
    _fill(small_disk, leave_bytes=2 * 2**20)
    run = subprocess.run(
        [sys.executable, "-m", "ute.cli", "serve", "--inbox", str(small_disk / "inbox"),
         "--outbox", str(small_disk / "outbox"), "--redis-port", str(free_port())],
        capture_output=True, text=True, timeout=60, env={**os.environ, "UTE_MIN_FREE_MB": "8"},
    )  # fmt: skip
    errors = [line for line in run.stderr.splitlines() if line.startswith("ute: error:")]
    assert run.returncode != 0 and len(errors) == 1, run.stderr
    assert "not starting: only" in errors[0] and "free some space" in errors[0]
