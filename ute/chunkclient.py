"""A worker's side of chunks over the network (see ute.transfer): where ffmpeg reads the source,
and sending the segment and its check back for the coordinator to commit."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from ute import transfer
from ute.commands import RemoteSource
from ute.defaults import ENV_CHUNK_SERVERS
from ute.errors import EncodeError
from ute.state import load_ticket

log = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 60
SEND_TRIES = 3
HASH_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Coordinator:
    """Where a worker reaches the coordinator for one file, and how it trusts it."""

    ticket: transfer.Ticket
    worker: str
    ca_file: str | None  # from the worker's rediss:// URL (ssl_ca_certs); else the system's authorities

    def source(self, work_id: str, chunk_index: int) -> RemoteSource:
        return RemoteSource(self.ticket.url + transfer.source_path(work_id),
                            (*self._headers(), (transfer.CHUNK_HEADER, str(chunk_index))),
                            transfer.REQUEST_BYTES, transfer.PROBE_REQUEST_BYTES, self.ca_file)  # fmt: skip

    def _headers(self) -> tuple[tuple[str, str], ...]:
        return ((transfer.AUTHORIZATION, f"Bearer {self.ticket.token}"),
                (transfer.WORKER_HEADER, self.worker))

    def send(self, path: str, method: str, name: str, body: Path | None = None) -> None:
        """One request, tried again after a refused connection (the coordinator restarting);
        EncodeError with the coordinator's one-line reason when it says no."""
        headers = dict(self._headers())
        if body is not None:
            headers[transfer.SHA256_HEADER] = _sha256(body)
            headers["Content-Length"] = str(body.stat().st_size)
        for attempt in range(1, SEND_TRIES + 1):
            try:
                with body.open("rb") if body is not None else contextlib.nullcontext() as data:
                    request = urllib.request.Request(self.ticket.url + path, data=data, method=method,
                                                     headers=headers)  # fmt: skip
                    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS,
                                                context=self._tls()) as response:  # fmt: skip
                        response.read()
                return
            except urllib.error.HTTPError as error:
                reason = error.read(500).decode("utf-8", "replace").strip().splitlines()
                said = reason[0] if reason else error.reason
                if error.code == 404:  # the file is not on offer: the coordinator restarted, or ended it
                    raise EncodeError(f"{name}: {transfer.COORDINATOR_AWAY}: {said}") from None
                raise EncodeError(f"{name}: the coordinator refused it ({error.code}): {said}") from None
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                if isinstance(reason, ssl.SSLError):
                    raise EncodeError(f"{name}: the coordinator's certificate is not trusted here "
                                      f"({reason}); give this worker's rediss:// URL the authority as "
                                      "ssl_ca_certs") from None  # fmt: skip
                if attempt == SEND_TRIES:
                    raise EncodeError(f"{name}: {transfer.COORDINATOR_AWAY}: cannot reach it at "
                                      f"{self.ticket.url}: {reason}") from None  # fmt: skip
                time.sleep(attempt)

    def _tls(self) -> ssl.SSLContext | None:
        if urlsplit(self.ticket.url).scheme != "https":
            return None
        return ssl.create_default_context(cafile=self.ca_file)


def coordinator_for(connection: redis.Redis, work_id: str, worker: str, name: str) -> Coordinator:
    """The file's ticket from Redis, checked as UTE writes it; EncodeError saying what to do without one."""
    try:
        raw = load_ticket(connection, work_id)
    except ValueError:
        raw = {}
    if raw is None:
        raise EncodeError(f"{name}: this worker cannot read the file where the coordinator keeps it, and "
                          "the coordinator offers it over no network (an older UTE?): mount its folders, "
                          "or map them with --path-map")  # fmt: skip
    try:
        ticket = transfer.Ticket.from_json(raw)
    except ValueError as error:
        raise EncodeError(f"{name}: refused: {error}; UTE never writes that: check who else can write "
                          "to its Redis") from None  # fmt: skip
    kwargs = connection.connection_pool.connection_kwargs
    ticket = ticket.on_worker(kwargs.get("host"))
    _check_reachable_as_told(ticket, kwargs.get("host"), connection, name)
    return Coordinator(ticket, worker, kwargs.get("ssl_ca_certs"))


def allowed_hosts() -> set[str]:
    """Hosts besides the Redis host this worker reads chunks from ($UTE_CHUNK_SERVERS, ';'-joined)."""
    return {host.strip() for host in os.environ.get(ENV_CHUNK_SERVERS, "").split(";") if host.strip()}


def _check_reachable_as_told(ticket: transfer.Ticket, redis_host: str | None, connection: redis.Redis,
                             name: str) -> None:  # fmt: skip
    """A ticket is a Redis record: it may send this worker's ffmpeg only to the coordinator it
    reaches Redis at, or to a host the worker was told to trust, and only over TLS if Redis is."""
    host = urlsplit(ticket.url).hostname or ""
    if host != redis_host and host not in allowed_hosts():
        raise EncodeError(f"{name}: refused: the coordinator says its chunks are at {host}, not where this "
                          f"worker reaches Redis ({redis_host}); if that is right, start the worker with "
                          f"--allow-chunk-server {host}")  # fmt: skip
    tls_to_redis = issubclass(connection.connection_pool.connection_class, redis.SSLConnection)
    if tls_to_redis and urlsplit(ticket.url).scheme != "https":
        raise EncodeError(f"{name}: refused: Redis speaks TLS but the coordinator's chunk server does not; "
                          "give the coordinator's rediss:// URL ssl_certfile and ssl_keyfile")  # fmt: skip


def send_segment(coordinator: Coordinator, work_id: str, index: int, attempt: str, segment: Path,
                 check: Path, name: str) -> None:  # fmt: skip
    """Upload the check and the segment, then ask the coordinator to commit them (its fence decides)."""
    coordinator.send(transfer.upload_path(work_id, index, attempt, transfer.CHECK), "PUT", name, check)
    coordinator.send(transfer.upload_path(work_id, index, attempt, transfer.SEGMENT), "PUT", name, segment)
    coordinator.send(transfer.commit_path(work_id, index, attempt), "POST", name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
