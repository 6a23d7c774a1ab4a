"""Chaos: several files through `ute serve` with 3 workers while workers, the private Redis and the
service itself are killed at random (seeded) moments. At the end every output is frame-exact,
every source is in done/, no chunk was committed twice and no process is left over.

One seed runs in the suite; `UTE_CHAOS_SEEDS=1,2,3 pytest -m chaos` runs more.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import spawn, wait_for
from media import frame_hashes, make_clip

from ute import runner, state
from ute.redis_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SEEDS = [int(seed) for seed in os.environ.get("UTE_CHAOS_SEEDS", "1").split(",") if seed.strip()]
EVENTS = 10
FILES = {"one.mkv": 8.0, "two.mp4": 6.0, "high/three.mkv": 5.0}


class Farm:
    """`ute serve` with 3 local workers over one folder, and every process it ever started."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.folder, self.log = folder, log
        self.port = free_port()
        self.serve: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, psutil.Process] = {}

    def start(self) -> None:
        before = self.log.stat().st_size if self.log.exists() else 0
        self.serve = spawn([
            sys.executable, "-m", "ute.cli", "serve", "--inbox", str(self.folder / "inbox"),
            "--outbox", str(self.folder / "outbox"), "--plugins", "/nonexistent", "--workers", "3",
            "--redis-port", str(self.port), "--settle-seconds", "1", "--preset", "ultrafast",
            "--chunk-frames", "24", "--x265-params", "lossless=1", "--log-level", "DEBUG",
        ], log_path=self.log)  # fmt: skip
        wait_for(lambda: "started 3 local workers" in self.log.read_bytes()[before:].decode(errors="replace"),
                 "the farm", log=self.log, process=self.serve)  # fmt: skip
        self.note_processes()

    def note_processes(self) -> list[psutil.Process]:
        assert self.serve is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in psutil.Process(self.serve.pid).children(recursive=True):
                self.seen.setdefault(process.pid, process)
        return [process for process in self.seen.values() if _alive(process)]

    def children(self, match: str) -> list[psutil.Process]:
        return [p for p in self.note_processes() if match in " ".join(_cmdline(p))]

    def crash(self) -> None:
        """SIGKILL the service and everything it started: a power cut of the coordinator."""
        assert self.serve is not None
        family = [psutil.Process(self.serve.pid), *self.note_processes()]
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        self.serve.wait()
        psutil.wait_procs(family, timeout=10)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return process.cmdline()
    return []


def _signal_one(farm: Farm, rng: random.Random, match: str, sig: signal.Signals) -> str:
    candidates = farm.children(match)
    if not candidates:
        return f"no {match} to signal"
    victim = rng.choice(sorted(candidates, key=lambda p: p.pid))
    with contextlib.suppress(psutil.NoSuchProcess):
        victim.send_signal(sig)
    return f"{sig.name} {match} {victim.pid}"


def _events(farm: Farm, rng: random.Random) -> dict[str, Callable[[], str]]:
    def crash_and_restart() -> str:
        farm.crash()
        farm.start()
        return "SIGKILL ute serve and all it started; started it again"

    return {
        "kill a worker": lambda: _signal_one(farm, rng, "ute.worker", signal.SIGKILL),
        "stop a worker": lambda: _signal_one(farm, rng, "ute.worker", signal.SIGTERM),
        "kill an encoder": lambda: _signal_one(farm, rng, "libx265", signal.SIGKILL),
        "kill Redis": lambda: _signal_one(farm, rng, "redis-server", signal.SIGKILL),
        "crash ute serve": crash_and_restart,
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_loses_nothing_and_commits_each_chunk_once(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    inbox = tmp_path / "inbox"
    (inbox / "high").mkdir(parents=True)
    (tmp_path / "sources").mkdir()
    sources = {name: make_clip(tmp_path / "sources" / Path(name).name, seconds=seconds, gop=24,
                               size="640x360", audio_tracks=1)
               for name, seconds in FILES.items()}  # fmt: skip
    log, chaos_log = tmp_path / "serve.log", tmp_path / "chaos.log"
    farm = Farm(tmp_path, log)
    farm.start()
    for name, source in sources.items():
        (inbox / name).write_bytes(source.read_bytes())
    done = [inbox / "done" / Path(name).name for name in FILES]
    started = time.monotonic()
    events = _events(farm, rng)
    with chaos_log.open("w") as record:
        for _ in range(EVENTS):
            time.sleep(rng.uniform(0.5, 3.0))
            if all(path.exists() for path in done):
                break
            kind = rng.choice(sorted(events))
            what = events[kind]()
            record.write(f"{time.monotonic() - started:7.2f} s  seed {seed}: {kind}: {what}\n")
            record.flush()
    print(chaos_log.read_text())

    for path in done:
        wait_for(path.exists, f"{path.name} in done/ (chaos: {chaos_log.read_text()})", timeout=400,
                 log=log, process=farm.serve)  # fmt: skip
    for name, source in sources.items():
        output = tmp_path / "outbox" / f"{Path(name).stem}.mkv"
        assert frame_hashes(output) == frame_hashes(source), f"{name} (chaos: {chaos_log.read_text()})"
    connection = state.connect(f"redis://127.0.0.1:{farm.port}/0")
    commits = {key.decode(): int(connection.get(key) or 0)
               for key in connection.scan_iter(f"{state.KEY_PREFIX}commits:*")}  # fmt: skip
    assert commits and max(commits.values()) == 1, commits
    assert not list((inbox / "failed").glob("*")), "nothing failed"

    assert farm.serve is not None
    runner.stop([farm.serve], grace_seconds=60)
    left = psutil.wait_procs([p for p in farm.seen.values() if _alive(p)], timeout=10)[1]
    assert not left, [(p.pid, _cmdline(p)) for p in left]
