"""`ute pause`, `resume`, `cancel` and `retry` against a real service, workers and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_ute, spawn, wait_for
from media import make_clip

from ute import control, state
from ute.errors import UteError
from ute.history import History, HistoryEntry
from ute.inbox import InboxLayout

pytestmark = pytest.mark.slow


def job_of(redis_url: str, name: str) -> dict | None:
    snap = json.loads(run_ute("status", "--json", "--redis-url", redis_url).stdout)
    return next((job for job in snap["jobs"] if job["name"] == name), None)


def test_pause_resume_cancel_and_retry(tmp_path: Path, clean_redis: str) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    spawn([sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
           "--plugins", "/nonexistent", "--settle-seconds", "1", "--workers", "1", "--redis-url", clean_redis,
           "--preset", "slow", "--chunk-frames", "48"], log_path=tmp_path / "serve.log")  # fmt: skip
    first = make_clip(tmp_path / "first.mkv", seconds=12, size="640x360", gop=48)
    first.rename(inbox / "first.mkv")

    job = wait_for(lambda: (j := job_of(clean_redis, "first.mkv")) and j["chunks_done"] >= 1 and j,
                   "the first chunk of first.mkv")  # fmt: skip
    assert run_ute("pause", job["id"], "--redis-url", clean_redis).returncode == 0
    connection = state.connect(clean_redis)
    wait_for(lambda: state.queue(state.QUEUE_LOW, connection).count == 0, "the queued chunks to leave")
    time.sleep(4)  # the running chunk finishes; no other starts
    paused = job_of(clean_redis, "first.mkv")
    assert paused["state"] == "paused" and paused["chunks_done"] < paused["chunks_total"]
    time.sleep(2)
    assert job_of(clean_redis, "first.mkv")["chunks_done"] == paused["chunks_done"]

    assert run_ute("resume", job["id"], "--redis-url", clean_redis).returncode == 0
    wait_for(lambda: (inbox / "done" / "first.mkv").exists(), "first.mkv to finish after resume")

    second = make_clip(tmp_path / "second.mkv", seconds=12, size="640x360", gop=48)
    second.rename(inbox / "second.mkv")
    job = wait_for(lambda: (j := job_of(clean_redis, "second.mkv")) and j["state"] == "encoding" and j,
                   "second.mkv to start")  # fmt: skip
    cancel = run_ute("cancel", job["id"], "--redis-url", clean_redis)
    assert cancel.returncode == 0, cancel.stderr
    wait_for(lambda: job_of(clean_redis, "second.mkv")["state"] == "cancelled", "the cancel")
    assert (inbox / "second.mkv").exists(), "a cancelled source stays in place"
    assert not list((outbox / ".ute-work").glob("*/0*.mkv")), "its work folder is gone"
    assert not (outbox / "second.mkv").exists()

    assert run_ute("retry", job["id"], "--redis-url", clean_redis).returncode == 0
    # The source moves to done/ last, after the output, the post plugins and the history entry.
    wait_for(lambda: (inbox / "done" / "second.mkv").exists(), "second.mkv after retry")
    history = json.loads(run_ute("history", "--outbox", str(outbox), "--json").stdout)
    assert [e["outcome"] for e in history if e["source"].endswith("second.mkv")] == [
        "cancelled", "retried", "done"]  # fmt: skip


def test_retry_puts_a_failed_file_back_where_it_came_from(tmp_path: Path, clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    inbox = tmp_path / "inbox"
    (inbox / "failed").mkdir(parents=True)
    (inbox / "failed" / "movie.mkv").write_bytes(b"video")
    (inbox / "failed" / "movie.mkv.error.txt").write_text("x265 said no")
    state.finish_file_record(connection, "job1", "failed", source=str(inbox / "high" / "movie.mkv"),
                             queue=state.QUEUE_HIGH)  # fmt: skip
    control.retry(connection, "job1", inbox)
    assert (inbox / "high" / "movie.mkv").read_bytes() == b"video"
    assert not (inbox / "failed" / "movie.mkv.error.txt").exists()
    with pytest.raises(UteError, match="only failed or cancelled"):
        state.save_file_record(connection, "job2", source="/x.mkv", state="done")
        control.retry(connection, "job2", inbox)
    with pytest.raises(UteError, match="no file nope"):
        control.pause(connection, "nope")


def test_retry_finds_a_failed_file_in_the_history_once_redis_forgot(tmp_path: Path, clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    inbox = tmp_path / "inbox"
    layout = InboxLayout(inbox)
    layout.create()
    for content, file_id in ((b"older", "job0"), (b"video", "job3")):  # the second lands as movie (2).mkv
        (inbox / "movie.mkv").write_bytes(content)
        layout.move_to_failed(inbox / "movie.mkv", "x265 said no", file_id)
    assert "`ute retry job3`" in (inbox / "failed" / "movie (2).mkv.error.txt").read_text()
    history = History(tmp_path / "history.sqlite")
    history.add(HistoryEntry(file_id="job3", source=str(inbox / "movie.mkv"), outcome="failed", queue="low"))
    assert state.file_record(connection, "job3") is None
    message = control.retry(connection, "job3", inbox, history)
    assert "is back in" in message
    assert (inbox / "movie.mkv").read_bytes() == b"video"
    assert (inbox / "failed" / "movie.mkv").read_bytes() == b"older"
    assert not (inbox / "failed" / "movie (2).mkv.error.txt").exists()
    with pytest.raises(UteError, match="no file job9 in Redis or in the history"):
        control.retry(connection, "job9", inbox, history)
    history.add(HistoryEntry(file_id="job7", source=str(inbox / "movie.mkv"), outcome="failed", queue="low"))
    with pytest.raises(UteError, match=r"not in .* any more"):  # failed/movie.mkv is job0's
        control.retry(connection, "job7", inbox, history)
    assert (inbox / "failed" / "movie.mkv").read_bytes() == b"older"


def test_pause_resume_and_cancel_work_on_a_file_run_by_ute_encode(tmp_path: Path, clean_redis: str) -> None:
    """They used to print "pausing…" and be ignored; a failed or cancelled run now leaves no
    chunk queued for remote workers either."""
    source = make_clip(tmp_path / "movie.mkv", seconds=12, size="640x360", gop=48)
    log = tmp_path / "encode.log"

    def encode(output: str) -> subprocess.Popen[bytes]:
        return spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(tmp_path / output),
                      "--workers", "1", "--redis-url", clean_redis, "--preset", "slow",
                      "--chunk-frames", "48"], log_path=log)  # fmt: skip

    run = encode("paused.mkv")
    job = wait_for(lambda: (j := job_of(clean_redis, "movie.mkv")) and j["chunks_done"] >= 1 and j,
                   "a first chunk", log=log, process=run)  # fmt: skip
    assert run_ute("pause", job["id"], "--redis-url", clean_redis).returncode == 0
    connection = state.connect(clean_redis)
    wait_for(lambda: "paused: queued chunks wait" in log.read_text(), "the pause", log=log, process=run)
    wait_for(lambda: state.queue(state.QUEUE_LOW, connection).count == 0, "the queued chunks to leave")
    assert run.poll() is None
    assert run_ute("resume", job["id"], "--redis-url", clean_redis).returncode == 0
    assert run.wait(timeout=300) == 0, log.read_text()
    assert (tmp_path / "paused.mkv").exists()

    run = encode("cancelled.mkv")
    job = wait_for(lambda: (j := job_of(clean_redis, "movie.mkv")) and j["state"] == "encoding" and j,
                   "the second run", log=log, process=run)  # fmt: skip
    assert run_ute("cancel", job["id"], "--redis-url", clean_redis).returncode == 0
    assert run.wait(timeout=120) == 1
    assert "cancelled by `ute cancel" in log.read_text()
    assert state.queue(state.QUEUE_LOW, connection).count == 0
    assert not (tmp_path / "cancelled.mkv").exists()
    assert job_of(clean_redis, "movie.mkv")["state"] == "cancelled"  # type: ignore[index]
