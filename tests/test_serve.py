"""`ute serve` end to end: a real service, real workers, real Redis, files dropped as users do."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from conftest import exited, failing_ffmpeg, finished_segments, spawn, wait_for
from media import frame_hashes, make_clip
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from ute import runner, state
from ute.probe import probe
from ute.redis_server import free_port

pytestmark = pytest.mark.slow

SERVICE_OPTIONS = ("--settle-seconds", "1", "--stall-seconds", "8", "--preset", "ultrafast",
                   "--log-level", "DEBUG")  # fmt: skip
NO_PLUGINS = ("--plugins", "/nonexistent")


def start_serve(folder: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn(
        [sys.executable, "-m", "ute.cli", "serve", "--inbox", str(folder / "inbox"),
         "--outbox", str(folder / "outbox"), *NO_PLUGINS, *SERVICE_OPTIONS, *extra],
        log_path=folder / "serve.log",
    )  # fmt: skip


@pytest.fixture
def service_folder(tmp_path: Path) -> Path:
    (tmp_path / "inbox" / "high").mkdir(parents=True)
    return tmp_path


def slow_copy(source: Path, target: Path, pause: float) -> threading.Thread:
    """Copy in two halves with a long pause, closing the file in between (a network share)."""
    data = source.read_bytes()

    def copy() -> None:
        target.write_bytes(data[: len(data) // 2])
        time.sleep(pause)
        with target.open("ab") as rest:
            rest.write(data[len(data) // 2 :])

    thread = threading.Thread(target=copy)
    thread.start()
    return thread


def test_serve_sorts_good_and_bad_files_and_honours_priority(
    service_folder: Path, clean_redis: str
) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log = service_folder / "serve.log"
    staging = service_folder / "staging"
    staging.mkdir()
    slow_source = make_clip(staging / "slow.mkv", seconds=6, audio_tracks=1)
    urgent = make_clip(staging / "urgent.mkv", seconds=2)
    whole = make_clip(staging / "whole.mkv", seconds=6).read_bytes()

    serve = start_serve(service_folder, "--workers", "2", "--redis-url", clean_redis)
    copier = slow_copy(slow_source, inbox / "slow.mkv", pause=4)
    (inbox / "empty.mkv").write_bytes(b"")
    (inbox / "notes.mkv").write_text("this is not a video\n" * 20)
    (inbox / "truncated.mkv").write_bytes(whole[: len(whole) // 2])
    urgent.rename(inbox / "high" / "urgent.mkv")

    failed = inbox / "failed"
    def all_handled() -> bool:
        return len(list(failed.glob("*.error.txt"))) == 3 and len(list((inbox / "done").glob("*"))) == 2

    wait_for(all_handled, "all five files to be handled", log=log, process=serve)
    copier.join()
    assert serve.poll() is None, "the service must keep running"

    assert probe(outbox / "slow.mkv").frame_count == 144
    assert frame_hashes(outbox / "urgent.mkv") and probe(outbox / "urgent.mkv").frame_count == 48
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["slow.mkv", "urgent.mkv"]
    assert (inbox / "done" / "slow.mkv").read_bytes() == slow_source.read_bytes()
    reasons = {p.name: p.read_text() for p in failed.glob("*.error.txt")}
    assert "empty" in reasons["empty.mkv.error.txt"]
    assert "cannot read" in reasons["notes.mkv.error.txt"]
    assert "truncated" in reasons["truncated.mkv.error.txt"]
    assert (failed / "truncated.mkv").read_bytes() == whole[: len(whole) // 2]

    connection = state.connect(clean_redis)
    high = Queue(state.QUEUE_HIGH, connection=connection, serializer=JSONSerializer)
    assert len(FinishedJobRegistry(queue=high).get_job_ids()) == 1  # urgent.mkv: one chunk

    runner.stop([serve])
    entries = {Path(e["source"]).name: e for e in _history(outbox)}
    assert {name: e["outcome"] for name, e in entries.items()} == {
        "slow.mkv": "done", "urgent.mkv": "done", "empty.mkv": "failed",
        "notes.mkv": "failed", "truncated.mkv": "failed"}  # fmt: skip
    assert entries["slow.mkv"]["frames"] == 144 and entries["slow.mkv"]["output_bytes"] > 0
    assert entries["urgent.mkv"]["queue"] == "high"


def _history(outbox: Path) -> list[dict]:  # type: ignore[type-arg]
    run = subprocess.run([sys.executable, "-m", "ute.cli", "history", "--outbox", str(outbox), "--json"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return list(json.loads(run.stdout))


def kill_everything(serve: subprocess.Popen[bytes]) -> None:
    """SIGKILL the service and every process it started (workers, work horses, ffmpeg, Redis)."""
    family = [psutil.Process(serve.pid), *psutil.Process(serve.pid).children(recursive=True)]
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    serve.wait()
    psutil.wait_procs(family, timeout=10)


def test_sigkill_of_everything_mid_file_then_restart_completes_it(service_folder: Path) -> None:
    """Only what is missing is encoded again, and the disk, not Redis, says what is done: a
    finished segment deleted while UTE was down is encoded again."""
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log = service_folder / "serve.log"
    source = make_clip(service_folder / "movie.mkv", seconds=20, fps=24, gop=24, audio_tracks=1)
    port = str(free_port())
    options = ("--workers", "2", "--redis-port", port, "--chunk-frames", "24",
               "--x265-params", "lossless=1")  # fmt: skip
    serve = start_serve(service_folder, *options)
    (inbox / "movie.mkv").write_bytes(source.read_bytes())
    work = outbox / ".ute-work"
    wait_for(lambda: len(finished_segments(work)) >= 4, "a few chunks to finish", log=log, process=serve)
    kill_everything(serve)
    assert not (outbox / "movie.mkv").exists()
    segments = sorted(work.glob("*/0*.mkv"))
    assert len(segments) < 20, "the file finished before it could be killed"
    segments[0].unlink()

    restarted = datetime.now(UTC)
    serve = start_serve(service_folder, *options)
    resumed = inbox / "done" / "movie.mkv"
    wait_for(resumed.exists, "the resumed file to finish", log=log, process=serve)
    assert frame_hashes(outbox / "movie.mkv") == frame_hashes(source)
    assert [s.kind for s in probe(outbox / "movie.mkv").streams] == ["video", "audio"]
    lost = int(segments[0].stem)
    assert f"chunks {lost} are done in Redis but their segments are missing or broken" in log.read_text()
    connection = state.connect(f"redis://127.0.0.1:{port}/0")
    queue = Queue(state.QUEUE_LOW, connection=connection, serializer=JSONSerializer)
    finished = FinishedJobRegistry(queue=queue).get_job_ids()
    jobs = [job for job in Job.fetch_many(finished, connection=connection, serializer=JSONSerializer)
            if job is not None and job.ended_at is not None]  # fmt: skip
    encoded_after = sum(1 for job in jobs if job.ended_at.replace(tzinfo=UTC) > restarted)
    # the chunks left over plus the deleted one, and one more for what the append-only file
    # had not yet written when Redis was killed
    assert encoded_after <= 20 - len(segments) + 2, (encoded_after, len(segments))
    runner.stop([serve])


def test_a_restart_after_the_output_was_verified_only_runs_the_post_plugins(service_folder: Path) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log, plugin_log = service_folder / "serve.log", service_folder / "plugins.log"
    post = service_folder / "plugins" / "post" / "01_upload.sh"
    post.parent.mkdir(parents=True)
    post.write_text('echo "post $(basename "$UTE_OUTPUT")" >> "$PLUGIN_LOG"\n'
                    '[ -e "$PLUGIN_LOG.hang" ] || { touch "$PLUGIN_LOG.hang"; sleep 600; }\n')  # fmt: skip
    source = make_clip(service_folder / "movie.mkv", seconds=2, audio_tracks=1)
    argv = [sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
            "--plugins", str(post.parent.parent), *SERVICE_OPTIONS, "--workers", "1",
            "--redis-port", str(free_port())]  # fmt: skip
    environment = {**os.environ, "PLUGIN_LOG": str(plugin_log)}
    serve = spawn(argv, log_path=log, env=environment)
    (inbox / "movie.mkv").write_bytes(source.read_bytes())
    wait_for(Path(f"{plugin_log}.hang").exists, "the post plugin to hang", log=log, process=serve)
    kill_everything(serve)  # the output is verified and in place; the post plugin never finished
    stale_mux = outbox / ".movie (2).mkv.0123456789abcdef.part"  # as a killed mux leaves it
    stale_mux.write_bytes(b"half a file")
    (outbox / ".notes.part").write_text("not UTE's")
    assert [e["outcome"] for e in _history(outbox)] == ["verified"]
    assert not list((outbox / ".ute-work").glob("*/0*.mkv")), "segments go once the output is verified"

    serve = spawn(argv, log_path=log, env=environment)
    wait_for((inbox / "done" / "movie.mkv").exists, "the file to finish after the restart", log=log,
             process=serve)  # fmt: skip
    runner.stop([serve])
    assert sorted(p.name for p in outbox.iterdir() if not p.name.startswith(".")) == ["movie.mkv"]
    assert not stale_mux.exists() and (outbox / ".notes.part").exists()
    assert plugin_log.read_text().splitlines() == ["post movie.mkv", "post movie.mkv"]
    assert "was verified before UTE stopped" in log.read_text()
    [entry] = _history(outbox)
    assert entry["outcome"] == "done" and entry["frames"] == 48
    assert len(frame_hashes(outbox / "movie.mkv")) == 48


def test_sigterm_while_post_plugins_run_lets_them_finish_then_exits(service_folder: Path) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log, plugin_log = service_folder / "serve.log", service_folder / "plugins.log"
    post = service_folder / "plugins" / "post" / "01_slow_upload.sh"
    post.parent.mkdir(parents=True)
    post.write_text('touch "$PLUGIN_LOG.started"; sleep 3; echo "uploaded" >> "$PLUGIN_LOG"\n')
    serve = spawn([sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
                   "--plugins", str(post.parent.parent), *SERVICE_OPTIONS, "--workers", "1",
                   "--redis-port", str(free_port())], log_path=log,
                  env={**os.environ, "PLUGIN_LOG": str(plugin_log)})  # fmt: skip
    (inbox / "movie.mkv").write_bytes(make_clip(service_folder / "movie.mkv", seconds=2).read_bytes())
    wait_for(Path(f"{plugin_log}.started").exists, "the post plugin to start", log=log, process=serve)
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert plugin_log.read_text() == "uploaded\n"
    assert (inbox / "done" / "movie.mkv").exists()
    assert [e["outcome"] for e in _history(outbox)] == ["done"]


def test_a_chunk_that_keeps_failing_fails_its_file_cleanly(service_folder: Path, clean_redis: str) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log = service_folder / "serve.log"
    source = make_clip(service_folder / "movie.mkv", seconds=2)
    serve = spawn(
        [sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
         *NO_PLUGINS, *SERVICE_OPTIONS, "--workers", "1", "--redis-url", clean_redis],
        log_path=log,  # every try of every chunk fails, on the one worker there is
        env={**os.environ, "UTE_RETRY_DELAYS": "0.2,0.5,1",
             "UTE_FFMPEG": str(failing_ffmpeg(service_folder, "x265 [error]: the encoder broke"))},
    )  # fmt: skip
    (inbox / "movie.mkv").write_bytes(source.read_bytes())
    reason_file = inbox / "failed" / "movie.mkv.error.txt"
    wait_for(reason_file.exists, "the file to fail", log=log, process=serve)
    assert serve.poll() is None
    reason = reason_file.read_text()
    assert "the encoder broke" in reason and "failed 4 times" in reason
    assert "encodes it again" in reason and "`ute retry " in reason
    assert (inbox / "failed" / "movie.mkv").read_bytes() == source.read_bytes()
    assert [p.name for p in outbox.iterdir() if not p.name.startswith(".")] == []
    runner.stop([serve])


PLUGIN_FILES = {
    "pre/01_first.sh": 'echo "pre1 $(basename "$UTE_SOURCE")" >> "$PLUGIN_LOG"\n'
                       'case "$UTE_SOURCE" in *refuse*) echo "refused by policy" >&2; exit 2;; esac\n',
    "pre/02_second.py": "import json, os, pathlib\n"
                        "name = pathlib.Path(os.environ['UTE_SOURCE']).name\n"
                        "open(os.environ['PLUGIN_LOG'], 'a').write(f'pre2 {name}\\n')\n"
                        "if 'plugincrop' in name:\n"
                        "    overrides = pathlib.Path(os.environ['UTE_OVERRIDES'])\n"
                        "    overrides.write_text(json.dumps({'crop': '160:90:0:0'}))\n",
    "post/01_third.sh": 'echo "post1 $(basename "$UTE_SOURCE")" >> "$PLUGIN_LOG"\n',
    "post/02_fourth.py": "import os, pathlib, sys\n"
                         "name = pathlib.Path(os.environ['UTE_SOURCE']).name\n"
                         "open(os.environ['PLUGIN_LOG'], 'a').write(f'post2 {name}\\n')\n"
                         "sys.exit('could not notify' if 'postfail' in name else 0)\n",
    "post/README.txt": "not a plugin: skipped",
}  # fmt: skip


def test_plugins_run_in_order_and_settings_change_the_output(service_folder: Path, clean_redis: str) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log, plugin_log = service_folder / "serve.log", service_folder / "plugins.log"
    for relative, text in PLUGIN_FILES.items():
        (service_folder / "plugins" / relative).parent.mkdir(parents=True, exist_ok=True)
        (service_folder / "plugins" / relative).write_text(text)
    staging = service_folder / "staging"
    staging.mkdir()
    names = ["a.mkv", "plugincrop.mkv", "refuse.mkv", "postfail.mkv"]
    clips = {name: make_clip(staging / name, seconds=2, audio_tracks=1) for name in names}
    serve = spawn(
        [sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
         "--plugins", str(service_folder / "plugins"), *SERVICE_OPTIONS, "--workers", "2",
         "--redis-url", clean_redis],
        log_path=log, env={**os.environ, "PLUGIN_LOG": str(plugin_log)},
    )  # fmt: skip
    (inbox / "a.mkv.ute.toml").write_text('crop = "256:144:0:0"\n')
    for name, clip in clips.items():
        clip.rename(inbox / name)

    def all_handled() -> bool:
        return len(list((inbox / "done").glob("*.mkv"))) == 3 and (inbox / "failed" / "refuse.mkv").exists()

    wait_for(all_handled, "four files with plugins", log=log, process=serve)
    runner.stop([serve])

    lines = plugin_log.read_text().splitlines()
    for name in ("a.mkv", "plugincrop.mkv", "postfail.mkv"):
        assert [line.split()[0] for line in lines if line.endswith(" " + name)] == [
            "pre1", "pre2", "post1", "post2"]  # fmt: skip
    assert [line for line in lines if line.endswith("refuse.mkv")] == ["pre1 refuse.mkv"]

    assert (probe(outbox / "a.mkv").width, probe(outbox / "a.mkv").height) == (256, 144)
    assert (probe(outbox / "plugincrop.mkv").width, probe(outbox / "plugincrop.mkv").height) == (160, 90)
    assert probe(outbox / "postfail.mkv").frame_count == 48
    assert (inbox / "done" / "a.mkv.ute.toml").exists(), "the sidecar goes with its source"
    reason = (inbox / "failed" / "refuse.mkv.error.txt").read_text()
    assert "01_first.sh" in reason and "refused by policy" in reason

    entries = {Path(e["source"]).name: e for e in _history(outbox)}
    assert entries["postfail.mkv"]["outcome"] == "done"
    assert entries["postfail.mkv"]["warnings"] == [
        "post plugin 02_fourth.py failed: exit status 1: could not notify"]
    assert entries["a.mkv"]["warnings"] == [] and entries["a.mkv"]["settings"]["crop"] == "256:144:0:0"
    assert entries["refuse.mkv"]["outcome"] == "failed"


def test_files_with_one_name_get_one_output_each(service_folder: Path, clean_redis: str) -> None:
    """inbox/a.mkv, inbox/high/a.mkv and inbox/a.mp4 finish together: three outputs, none lost."""
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    staging = service_folder / "staging"
    staging.mkdir()
    sources = [make_clip(staging / f"{seconds}.mkv", seconds=seconds, size="160x90") for seconds in (1, 2)]
    sources.append(make_clip(staging / "3.mp4", seconds=3, size="160x90"))
    serve = start_serve(service_folder, "--workers", "2", "--redis-url", clean_redis)
    for source, target in zip(sources, (inbox / "a.mkv", inbox / "high" / "a.mkv", inbox / "a.mp4"),
                              strict=True):  # fmt: skip
        source.rename(target)
    done = inbox / "done"
    wait_for(lambda: done.is_dir() and len(list(done.glob("a.*"))) + len(list(done.glob("a (*"))) == 3,
             "three sources in done/", log=service_folder / "serve.log", process=serve)  # fmt: skip
    outputs = sorted(path.name for path in outbox.glob("a*.mkv"))
    assert outputs == ["a (2).mkv", "a (3).mkv", "a.mkv"]
    assert sorted(probe(outbox / name).frame_count for name in outputs) == [24, 48, 72]
    runner.stop([serve])


def test_serve_starts_its_private_redis_and_local_workers_again_when_they_die(service_folder: Path) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log = service_folder / "serve.log"
    source = make_clip(service_folder / "movie.mkv", seconds=12, fps=24, gop=24, audio_tracks=1)
    serve = start_serve(service_folder, "--workers", "2", "--redis-port", str(free_port()), "--chunk-frames",
                        "24", "--x265-params", "lossless=1")  # fmt: skip
    wait_for(lambda: "started 2 local workers" in log.read_text(), "the workers", log=log, process=serve)
    (inbox / "movie.mkv").write_bytes(source.read_bytes())
    work = outbox / ".ute-work"
    wait_for(lambda: len(finished_segments(work)) >= 2, "two chunks to finish", log=log, process=serve)

    children = psutil.Process(serve.pid).children()
    redis_server = next(p for p in children if "redis-server" in p.name())
    worker = next(p for p in children if "ute.worker" in " ".join(p.cmdline()))
    redis_server.send_signal(signal.SIGKILL)
    wait_for(lambda: "the private Redis exited" in log.read_text(), "Redis to be restarted", log=log,
             process=serve)  # fmt: skip
    for process in [worker, *worker.children(recursive=True)]:  # the worker, its horse and ffmpeg
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    wait_for(lambda: f"local worker {worker.pid} exited" in log.read_text(), "a worker to be replaced",
             log=log, process=serve)  # fmt: skip

    wait_for((inbox / "done" / "movie.mkv").exists, "the file to finish", log=log, process=serve)
    assert frame_hashes(outbox / "movie.mkv") == frame_hashes(source)
    workers = [p for p in psutil.Process(serve.pid).children() if "ute.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2 and worker.pid not in {p.pid for p in workers}
    runner.stop([serve])


def test_sigkill_of_serve_alone_takes_its_workers_encoders_and_redis_with_it(service_folder: Path) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log = service_folder / "serve.log"
    source = make_clip(service_folder / "movie.mkv", seconds=10, fps=24, gop=24)
    options = ("--workers", "2", "--redis-port", str(free_port()), "--chunk-frames", "96",
               "--x265-params", "lossless=1", "--preset", "medium")  # fmt: skip
    serve = start_serve(service_folder, *options)
    wait_for(lambda: "started 2 local workers" in log.read_text(), "the workers", log=log, process=serve)
    (inbox / "movie.mkv").write_bytes(source.read_bytes())

    def encoding() -> bool:
        with contextlib.suppress(psutil.NoSuchProcess):  # a process that ended while we looked
            workers = [p for p in psutil.Process(serve.pid).children() if "ute.worker" in p.cmdline()]
            return any("libx265" in p.cmdline() for w in workers for p in w.children(recursive=True))
        return False

    wait_for(encoding, "a worker to encode a chunk", log=log, process=serve)
    started: dict[psutil.Process, str] = {}
    for process in psutil.Process(serve.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            started[process] = process.name()
    assert "redis-server" in started.values() and any("ffmpeg" in name for name in started.values())
    serve.send_signal(signal.SIGKILL)
    serve.wait()
    deadline = time.monotonic() + 5
    while (left := [name for process, name in started.items() if not exited(process)]) and \
            time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.1)
    assert not left, f"still running 5 s after ute serve was killed: {left}"

    serve = start_serve(service_folder, *options)  # the port of its Redis is free again
    wait_for((inbox / "done" / "movie.mkv").exists, "the file to finish", log=log, process=serve)
    assert frame_hashes(outbox / "movie.mkv") == frame_hashes(source)
    runner.stop([serve])


def test_names_as_long_as_the_filesystem_allows_or_with_a_newline_work(service_folder: Path) -> None:
    inbox, outbox = service_folder / "inbox", service_folder / "outbox"
    log = service_folder / "serve.log"
    long_name = "é" * 125 + "ab.ts"  # 255 bytes: its output's name, with .mkv, does not fit
    make_clip(service_folder / "clip.ts", seconds=1, size="160x90").rename(inbox / long_name)
    make_clip(service_folder / "clip.mkv", seconds=1, size="160x90").rename(inbox / "two\nlines.mkv")
    (inbox / ("é" * 120 + "abcdef.mkv")).write_text("not a video\n")
    serve = start_serve(service_folder, "--workers", "1", "--redis-port", str(free_port()))
    done, failed = inbox / "done", inbox / "failed"
    wait_for(lambda: (done / long_name).exists() and (done / "two\nlines.mkv").exists()
             and len(list(failed.glob("*.error.txt"))) == 1,
             "all three files", log=log, process=serve)  # fmt: skip
    runner.stop([serve])
    outputs = sorted(path.name for path in outbox.glob("*.mkv"))
    assert outputs == sorted(["two\nlines.mkv", "é" * 125 + "a.mkv"]), outputs
    assert "not a media file" in next(failed.glob("*.error.txt")).read_text()
    assert "two\\nlines.mkv" in log.read_text() and "two\nlines.mkv" not in log.read_text()
