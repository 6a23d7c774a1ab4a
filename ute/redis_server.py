"""A private Redis server for a run that was given no Redis URL: real redis-server, loopback only."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from ute import runner, state, tools
from ute.errors import UteError

log = logging.getLogger(__name__)

STARTUP_SECONDS = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind((host, 0))
        return int(probe_socket.getsockname()[1])


def _client_host(bind_host: str) -> str:
    """Where a client on this machine reaches a server bound to bind_host."""
    return "127.0.0.1" if bind_host == "0.0.0.0" else bind_host


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.settimeout(1)
        return probe_socket.connect_ex((_client_host(host), port)) == 0


@contextlib.contextmanager
def private_redis(data_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Start redis-server with its append-only file in data_dir; yield its URL; stop it.

    With no port a free one is picked. A restart on the same data_dir and port finds every
    queued chunk again: the append-only file is replayed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = free_port(host)
    elif _port_taken(host, port):
        raise UteError(f"port {port} on {host} is in use: choose another --redis-port or pass --redis-url")
    argv = [
        tools.redis_server(),
        "--port", str(port), "--bind", host, "--protected-mode", "yes",
        "--dir", str(data_dir), "--appendonly", "yes", "--save", "",
        "--daemonize", "no", "--loglevel", "warning",
    ]  # fmt: skip
    process = runner.spawn(argv, log_path=data_dir / "redis.log")
    url = f"redis://{_client_host(host)}:{port}/0"
    try:
        _wait_until_ready(url, process)
        log.info("started a private Redis at %s (data in %s)", url, data_dir)
        yield url
    finally:
        runner.stop([process], grace_seconds=10)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    connection = state.connect(url)
    while True:
        if process.poll() is not None:
            raise UteError(f"redis-server exited at start: see {process.args[0]} log in its data folder")
        try:
            connection.ping()
            return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise UteError(f"redis-server did not answer within {STARTUP_SECONDS:.0f} s") from None
            time.sleep(0.05)
        finally:
            connection.close()
