"""A private Redis server for a run that was given no Redis URL: real redis-server, loopback only.
Light to import (no redis-py until a stop): `ute encode` starts it before it imports the rest of UTE."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from ute import runner, tools
from ute.errors import UteError

log = logging.getLogger(__name__)

STARTUP_SECONDS = 10.0
READY_POLL_SECONDS = 0.005  # it answers within about 10 ms of its start
SHUTDOWN_SECONDS = 2.0


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


class PrivateRedis:
    """A redis-server child with its append-only file in data_dir; start() again after it died
    brings it back on the same port with the same data (the append-only file is replayed)."""

    def __init__(self, data_dir: Path, host: str, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.client_host = _client_host(host)
        self.url = f"redis://{self.client_host}:{port}/0"
        self.argv = [
            tools.redis_server(),
            "--port", str(port), "--bind", host, "--protected-mode", "yes",
            "--dir", str(data_dir), "--appendonly", "yes", "--save", "",
            "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Dies with us, however we end: left behind, it would hold the port a restart wants.
        log_path = self.data_dir / "redis.log"
        self.process = runner.spawn(self.argv, log_path=log_path, die_with_parent=True)
        _wait_until_ready(self.client_host, self.port, self.process, log_path)

    def restart_if_dead(self) -> bool:
        """Start it again if it exited; whether it had."""
        if self.process is None or self.process.poll() is None:
            return False
        log.warning("the private Redis exited (status %s); starting it again on port %d with the same "
                    "data", self.process.returncode, self.port)  # fmt: skip
        self.start()
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            import redis  # here, not above: see the module's docstring
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # It handles SIGTERM at its next tick (up to 0.1 s); a SHUTDOWN (AOF flushed) at once.
            # Bounded: a server that does not answer is left to the SIGTERM and SIGKILL below.
            client = redis.Redis.from_url(self.url, socket_timeout=SHUTDOWN_SECONDS,
                                          socket_connect_timeout=SHUTDOWN_SECONDS,
                                          retry=Retry(NoBackoff(), 0))  # fmt: skip
            with contextlib.suppress(redis.exceptions.RedisError), contextlib.closing(client):
                client.shutdown()
        runner.stop([self.process], grace_seconds=10)


@contextlib.contextmanager
def private_redis_server(
    data_dir: Path, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[PrivateRedis]:
    """Start redis-server with its append-only file in data_dir; stop it on leaving.

    With no port a free one is picked. A restart on the same data_dir and port finds every
    queued chunk again: the append-only file is replayed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = free_port(host)
    elif _port_taken(host, port):
        raise UteError(f"port {port} on {host} is in use: choose another --redis-port or pass --redis-url")
    server = PrivateRedis(data_dir, host, port)
    try:
        server.start()
        log.info("started a private Redis at %s (data in %s)", server.url, data_dir)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_redis(data_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """private_redis_server, for those who need only its URL."""
    with private_redis_server(data_dir, host, port) as server:
        yield server.url


def _wait_until_ready(host: str, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not _answers_ping(host, port):
        if process.poll() is not None:
            raise UteError(f"redis-server exited at start: see {log_path}")
        if time.monotonic() > deadline:
            raise UteError(f"redis-server did not answer within {STARTUP_SECONDS:.0f} s: see {log_path}")
        time.sleep(READY_POLL_SECONDS)


def _answers_ping(host: str, port: int) -> bool:
    """Whether the server answers PING with PONG; False while it is not listening yet or still
    -LOADING its data; UteError for any other refusal (protected mode, a password)."""
    try:
        with socket.create_connection((host, port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            reply = connection.recv(256)
    except OSError:
        return False
    if reply.startswith(b"-") and not reply.startswith(b"-LOADING"):
        refusal = reply.decode(errors="replace").strip()
        raise UteError(f"redis-server on {host}:{port} refused a PING: {refusal}")
    return reply.startswith(b"+PONG")
