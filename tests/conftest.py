"""Shared fixtures: a real private Redis server and real ute-worker processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


def start_worker(redis_url: str, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return runner.spawn(
        [sys.executable, "-m", "ute.worker", "--redis-url", redis_url, *extra], log_path=log_path
    )
