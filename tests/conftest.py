"""Shared fixtures: a real private Redis server and real ute-worker processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ute import runner, state
from ute.redis_server import private_redis

sys.path.insert(0, str(Path(__file__).parent))


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


def start_worker(redis_url: str, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "ute.worker", "--redis-url", redis_url, *extra], log_path)
