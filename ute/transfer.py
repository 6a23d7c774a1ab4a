"""Chunks over the network, for workers that share no folder with the coordinator: what both sides
agree on. Pure: no I/O.

The coordinator serves each file it encodes at `/v1/WORK_ID/source` (byte ranges, which ffmpeg
seeks in) and takes each chunk's segment and check back at `/v1/WORK_ID/INDEX/ATTEMPT/segment|check`,
committing them with `/v1/WORK_ID/INDEX/ATTEMPT/commit` behind the same fence as a worker's rename
in a shared folder. Every request carries the file's token (`Authorization: Bearer …`): an HMAC of
the work id under the coordinator's secret, so it opens that one file and nothing else. Paths never
come from a request: the work id picks a file the coordinator offered, and the names are its own.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ute.defaults import DEFAULT_CHUNK_SERVER_PORT

API = "/v1"
SEGMENT, CHECK = "segment", "check"
UPLOAD_KINDS = (SEGMENT, CHECK)
ATTEMPT = re.compile(r"[0-9a-f]{32}")  # jobs' uuid4().hex
TOKEN = re.compile(r"[0-9a-f]{64}")
WORKER_NAME = re.compile(r"[\w.\-:@]{1,100}", re.ASCII)

AUTHORIZATION = "Authorization"
SHA256_HEADER = "X-UTE-SHA256"
WORKER_HEADER = "X-UTE-Worker"  # who asks, for the bytes each worker moved
CHUNK_HEADER = "X-UTE-Chunk"  # which chunk a read is for, for the bytes each chunk cost

# ffmpeg reads the source in requests of this size (keep-alive), so that a chunk costs what it
# reads plus less than one request, not the rest of the file queued in socket buffers; requests
# made while it reads the container's header and index are smaller. Measured with
# bench/transfer_bench.py (60 s 1280x720 MP4, 7.83 MiB a chunk): 1 MiB requests cost a chunk
# 1.03-1.18x its share of the source, 256 KiB ones 1.03-1.11x; 1 MiB ones while probing too cost
# a 1 MB chunk of a smaller clip 2.3-4.1x.
REQUEST_BYTES = 256 << 10
PROBE_REQUEST_BYTES = 64 << 10
MAX_SEGMENT_BYTES = 64 << 30
MAX_CHECK_BYTES = 16 << 20
MAX_UPLOAD_BYTES = {SEGMENT: MAX_SEGMENT_BYTES, CHECK: MAX_CHECK_BYTES}

# Why the coordinator refuses a chunk's upload or commit (409): the worker gives the chunk up.
SUPERSEDED = "a newer attempt took this chunk over"

# A network chunk that failed because the coordinator was not serving its file (restarting,
# say): not the chunk's fault, so it is tried again without counting as a failure.
COORDINATOR_AWAY = "the coordinator did not serve this file (restarting?)"
_AWAY_SIGNS = ("Connection refused", "404 Not Found", "Connection reset", COORDINATOR_AWAY)


def is_coordinator_away(message: str) -> bool:
    return any(sign in message for sign in _AWAY_SIGNS)


# Where the worker reads and writes, as `ute status` shows it.
INPUT_SHARED_FOLDER = "shared folder"
INPUT_NETWORK = "network"

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class ServerOptions:
    """How the coordinator serves chunks: `--chunk-server-host/--chunk-server-port/--advertise-url`."""

    enabled: bool = True
    host: str | None = None  # None: where its Redis listens (see chunkserver.chunk_server)
    port: int = DEFAULT_CHUNK_SERVER_PORT
    advertise_url: str | None = None  # what workers are told, where they reach us by another address


def token(secret: bytes, work_id: str) -> str:
    """The file's token: opens the source and the chunk uploads of work_id, and nothing else."""
    return hmac.new(secret, work_id.encode("ascii"), hashlib.sha256).hexdigest()


def token_matches(secret: bytes, work_id: str, given: str) -> bool:
    return hmac.compare_digest(token(secret, work_id), given)


def bearer(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer …` header, if it has one of a token's form."""
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and TOKEN.fullmatch(value) else None


def source_path(work_id: str) -> str:
    return f"{API}/{work_id}/source"


def upload_path(work_id: str, index: int, attempt: str, kind: str) -> str:
    return f"{API}/{work_id}/{index}/{attempt}/{kind}"


def commit_path(work_id: str, index: int, attempt: str) -> str:
    return f"{API}/{work_id}/{index}/{attempt}/commit"


@dataclass(frozen=True)
class Ticket:
    """What a worker needs to reach a file over the network, as the coordinator puts it in Redis.
    url's host may be empty: then it is the host the worker reaches Redis at (the coordinator
    listens on every address)."""

    url: str  # http(s)://HOST:PORT
    token: str

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token}

    @classmethod
    def from_json(cls, data: object) -> Ticket:
        """ValueError unless data is a ticket as UTE writes it."""
        if not isinstance(data, dict) or set(data) != {"url", "token"}:
            raise ValueError("the file's network ticket is not {url, token}")
        url, given = data["url"], data["token"]
        if not isinstance(given, str) or not TOKEN.fullmatch(given):
            raise ValueError("the file's network token is not 64 hex digits")
        if not isinstance(url, str):
            raise ValueError("the coordinator's URL is not a string")
        check_base_url(url)
        return cls(url, given)

    def on_worker(self, redis_host: str | None) -> Ticket:
        """With the host filled in where the coordinator left it to the worker."""
        parts = urlsplit(self.url)
        if parts.hostname or not redis_host:
            return self
        return Ticket(f"{parts.scheme}://{url_host(redis_host)}:{parts.port}", self.token)


def check_base_url(url: str) -> None:
    """ValueError unless url is `http(s)://HOST:PORT` (the host may be empty) and nothing more."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the coordinator's URL is not http:// or https://")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or parts.username or parts.password or parts.path or parts.query or parts.fragment:
        raise ValueError("the coordinator's URL is not scheme://HOST:PORT")
    host = parts.hostname or ""
    if host and not re.fullmatch(r"[A-Za-z0-9.\-:]+", host):
        raise ValueError("the coordinator's URL has an odd host name")


def url_host(host: str) -> str:
    """host as a URL writes it (an IPv6 address in brackets)."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def base_url(scheme: str, host: str, port: int) -> str:
    """What workers are told: the host left empty when the server listens on every address."""
    return f"{scheme}://{'' if host in WILDCARD_HOSTS else url_host(host)}:{port}"
