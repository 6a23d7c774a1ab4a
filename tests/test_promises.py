"""README promises about `ute serve` and `ute encode` that no other test keeps: what happens to a
source after its output is verified, a file already encoded, a cancel that outlives a restart,
`--log-file`, `ute logs` from the history, and the second stop signal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import exited, finished_segments, run_ute, spawn, wait_for
from media import make_clip
from test_serve import SERVICE_OPTIONS, _history, start_serve

from ute import runner
from ute.redis_server import free_port

pytestmark = pytest.mark.slow

TINY = {"seconds": 1, "size": "160x90"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "inbox" / "high").mkdir(parents=True)
    return tmp_path


def test_done_action_keep_then_delete_and_a_file_already_encoded_is_not_encoded_again(folder: Path) -> None:
    inbox, outbox, log = folder / "inbox", folder / "outbox", folder / "serve.log"
    log_file = folder / "ute.log"
    port = str(free_port())
    serve = start_serve(folder, "--workers", "1", "--redis-port", port, "--done-action", "keep",
                        "--log-file", str(log_file))  # fmt: skip
    make_clip(folder / "kept.mkv", **TINY).rename(inbox / "kept.mkv")  # type: ignore[arg-type]
    wait_for((outbox / "kept.mkv").exists, "kept.mkv's output", log=log, process=serve)
    wait_for(lambda: [e for e in _history(outbox) if e["outcome"] == "done"], "its history entry", log=log)
    time.sleep(2.5)  # more than the settle time: a kept source is not offered again
    assert (inbox / "kept.mkv").exists() and not list((inbox / "done").iterdir())
    assert [e["outcome"] for e in _history(outbox)] == ["done"]
    runner.stop([serve])
    written = log_file.read_text()
    assert "kept.mkv: done in" in written and "watching" in written, "--log-file has the service's log"

    # A restart with --done-action delete: the kept source is already encoded (same path, size and
    # time, per the history), so it is not encoded again, only disposed of as now asked.
    serve = start_serve(folder, "--workers", "1", "--redis-port", port, "--done-action", "delete")
    wait_for(lambda: not (inbox / "kept.mkv").exists(), "the kept source to be deleted", log=log,
             process=serve)  # fmt: skip
    assert "kept.mkv: already encoded" in log.read_text()
    assert [e["outcome"] for e in _history(outbox)] == ["done"]

    make_clip(folder / "deleted.mkv", **TINY).rename(inbox / "deleted.mkv")  # type: ignore[arg-type]
    wait_for(lambda: not (inbox / "deleted.mkv").exists() and (outbox / "deleted.mkv").exists(),
             "deleted.mkv to be encoded and its source deleted", log=log, process=serve)  # fmt: skip
    assert not list((inbox / "done").iterdir())
    runner.stop([serve])
    assert sorted(p.name for p in outbox.glob("*.mkv")) == ["deleted.mkv", "kept.mkv"]


def test_a_cancel_outlives_a_restart_and_logs_come_from_the_history(folder: Path) -> None:
    inbox, outbox, log = folder / "inbox", folder / "outbox", folder / "serve.log"
    port = str(free_port())
    url = f"redis://127.0.0.1:{port}/0"
    options = ("--workers", "1", "--redis-port", port, "--preset", "slow", "--chunk-frames", "24")
    serve = start_serve(folder, *options)
    make_clip(folder / "movie.mkv", seconds=10, size="320x180").rename(inbox / "movie.mkv")

    def movie() -> dict | None:  # type: ignore[type-arg]
        status = run_ute("status", "--json", "--redis-url", url)
        if status.returncode != 0:  # its Redis is not up yet
            return None
        jobs = json.loads(status.stdout)["jobs"]
        return next((job for job in jobs if job["name"] == "movie.mkv" and job["state"] == "encoding"), None)

    job = wait_for(movie, "movie.mkv to encode", log=log, process=serve)
    assert run_ute("cancel", job["id"], "--redis-url", url).returncode == 0
    wait_for(lambda: "movie.mkv: cancelled" in log.read_text(), "the cancel", log=log, process=serve)
    runner.stop([serve])

    serve = start_serve(folder, *options)
    wait_for(lambda: log.read_text().count("watching") == 2, "the restart", log=log, process=serve)
    time.sleep(3)  # more than the settle time: the source is seen again, and left alone
    status = json.loads(run_ute("status", "--json", "--redis-url", url).stdout)["jobs"]
    assert [(j["id"], j["state"]) for j in status] == [(job["id"], "cancelled")]
    assert (inbox / "movie.mkv").exists() and not (outbox / "movie.mkv").exists()

    assert run_ute("retry", job["id"], "--redis-url", url).returncode == 0
    wait_for((inbox / "done" / "movie.mkv").exists, "movie.mkv after the retry", log=log, process=serve,
             timeout=300)  # fmt: skip
    runner.stop([serve])
    assert [e["outcome"] for e in _history(outbox)] == ["cancelled", "retried", "done"]
    assert {e["file_id"] for e in _history(outbox)} == {job["id"]}

    # Redis is gone now: `ute logs` reads the file's log from the history, under the same id.
    logs = run_ute("logs", job["id"], "--outbox", str(outbox), "--redis-url", url)
    assert logs.returncode == 0, logs.stderr
    assert job["id"] in logs.stdout and "chunk 0" in logs.stdout


def test_the_second_signal_kills_a_post_plugin_and_its_children_and_exits_within_2_s(folder: Path) -> None:
    inbox, log = folder / "inbox", folder / "serve.log"
    post = folder / "plugins" / "post" / "01_upload.sh"
    post.parent.mkdir(parents=True)
    post.write_text('touch "$MARK"; sleep 600 & wait\n')  # a child of its own, as uploads have
    mark = folder / "started"
    serve = spawn([sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox",
                   str(folder / "outbox"), "--plugins", str(post.parent.parent), *SERVICE_OPTIONS,
                   "--workers", "1", "--redis-port", str(free_port())],
                  log_path=log, env={**os.environ, "MARK": str(mark)})  # fmt: skip
    make_clip(folder / "movie.mkv", **TINY).rename(inbox / "movie.mkv")  # type: ignore[arg-type]
    wait_for(mark.exists, "the post plugin to start", log=log, process=serve)
    family = psutil.Process(serve.pid).children(recursive=True)
    assert any(p.name() == "sleep" for p in family)
    serve.send_signal(signal.SIGTERM)
    wait_for(lambda: "finishing the running chunks" in log.read_text(), "the first signal's line", log=log)
    time.sleep(1)  # the plugin goes on after the first
    assert serve.poll() is None
    second = time.monotonic()
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=10) == 130
    took = time.monotonic() - second
    print(f"second signal to exit: {took:.2f} s")
    left = [p.name() for p in family if not exited(p)]
    assert took < 2 and not left, (took, left, log.read_text()[-2000:])
    assert "aborting now" in log.read_text()


def test_the_first_signal_stops_ute_encode_after_its_running_chunks_and_a_rerun_goes_on(
    tmp_path: Path,
) -> None:
    source = make_clip(tmp_path / "movie.mkv", seconds=12, size="320x180")
    output, log = tmp_path / "out.mkv", tmp_path / "encode.log"
    argv = [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output), "--workers", "1",
            "--chunk-frames", "24", "--preset", "slow"]  # fmt: skip
    encode = spawn(argv, log_path=log)
    work = tmp_path / ".ute-work"
    wait_for(lambda: finished_segments(work), "the first chunk", log=log, process=encode)
    encode.send_signal(signal.SIGINT)
    assert encode.wait(timeout=120) == 130
    kept = list(work.glob("*/0*.mkv"))
    assert kept and len(kept) < 12, "the running chunk finished; the queued ones did not start"
    assert "run the same command again" in log.read_text()
    assert list(work.glob("*/local-*/local-*-1.log")), "the worker's log is kept in the file's work folder"
    rerun = run_ute(*argv[3:])
    assert rerun.returncode == 0, rerun.stderr
    assert output.exists() and not work.exists()


def test_the_second_signal_ends_ute_encode_and_everything_it_started_within_2_s(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "movie.mkv", seconds=12, size="320x180")
    log = tmp_path / "encode.log"
    argv = [sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(tmp_path / "out.mkv"),
            "--workers", "2", "--chunk-frames", "24", "--preset", "slower"]  # fmt: skip
    encode = spawn(argv, log_path=log)

    def encoding() -> bool:
        with contextlib.suppress(psutil.NoSuchProcess):  # a process that ended while we looked
            return any("libx265" in p.cmdline() for p in psutil.Process(encode.pid).children(recursive=True))
        return False

    wait_for(encoding, "an encoder", log=log, process=encode)
    family = psutil.Process(encode.pid).children(recursive=True)
    encode.send_signal(signal.SIGINT)
    wait_for(lambda: "finish their running chunks" in log.read_text(), "the first signal's line", log=log)
    second = time.monotonic()
    encode.send_signal(signal.SIGINT)
    assert encode.wait(timeout=10) == 130
    took = time.monotonic() - second
    left = [p.name() for p in family if not exited(p)]
    assert took < 2 and not left, (took, left, log.read_text()[-2000:])
