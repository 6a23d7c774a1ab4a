"""Shared fixtures: a real private Redis server and real ute-worker processes."""

from __future__ import annotations

import compileall
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

import ute
from ute import runner, state, tools
from ute.redis_server import private_redis

sys.path.insert(0, str(Path(__file__).parent))
T = TypeVar("T")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The worker and CLI processes the tests start read UTE's bytecode as an install leaves it:
    where PYTHONDONTWRITEBYTECODE is set, each would compile every module again (0.2 s a worker)."""
    compileall.compile_dir(Path(ute.__file__).parent, quiet=1)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with private_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    connection = state.connect(redis_url)
    connection.flushdb()
    yield redis_url
    connection.flushdb()


_spawned: list[subprocess.Popen[bytes]] = []


def spawn(argv: list[str], log_path: Path | None = None, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start a helper process that is SIGKILLed, with everything it started, when the test ends."""
    process = runner.spawn(argv, log_path=log_path, env=env)
    _spawned.append(process)
    return process


@pytest.fixture(autouse=True)
def _reap_spawned() -> Iterator[None]:
    yield
    while _spawned:
        process = _spawned.pop()
        try:
            family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        process.wait()


def exited(process: psutil.Process) -> bool:
    """Gone, or a zombie: orphans here may be reparented to a PID 1 that never reaps them."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_ute(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`ute ARGS` as a user runs it (the installed package, this interpreter)."""
    return subprocess.run([sys.executable, "-m", "ute.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def wait_for(
    condition: Callable[[], T], what: str, timeout: float = 180, *,
    log: Path | None = None, process: subprocess.Popen[bytes] | None = None, every: float = 0.05,
) -> T:  # fmt: skip
    """Poll every `every` s until condition() is truthy and return it; fail early if process dies,
    with its log."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            tail = f"; log:\n{log.read_text()[-4000:]}" if log and log.exists() else ""
            pytest.fail(f"timed out waiting for {what}{tail}")
        time.sleep(every)
    return result


def finished_segments(work: Path) -> list[Path]:
    """The segments committed under a `.ute-work` folder while UTE runs: a folder that goes away
    as it is looked through (a pre plugin's, a run's local one) is passed over, not an error."""
    for _ in range(100):
        try:
            return sorted(work.glob("*/0*.mkv"))
        except FileNotFoundError:
            continue
    raise AssertionError(f"{work} kept changing under the look")


def start_worker(redis_url: str, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "ute.worker", "--redis-url", redis_url, *extra], log_path)


def failing_ffmpeg(folder: Path, message: str) -> Path:
    """An ffmpeg whose chunk encodes fail with `message` on stderr; everything else (the version
    and encoder checks, plan-time trial encodes) runs the real one."""
    script = folder / "failing-ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" trim=start_pts="*) ;; *) exec "{tools.ffmpeg()}" "$@";; esac\n'
        f"echo '{message}' >&2\nexit 1\n"
    )  # fmt: skip
    script.chmod(0o755)
    return script
