"""The coordinator's side of chunks over the network (see ute.transfer): a WSGI app that serves the
sources it offers in byte ranges and takes segments back, run by cheroot in a thread.

Nothing a request says becomes a path: the work id must be one the coordinator offered, and the
files it writes are named from the chunk's index and attempt, in that file's own work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from ute import state, transfer, verify
from ute.errors import UteError
from ute.plan import segment_name
from ute.state import count_moved, drop_ticket, save_ticket

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "transfer.secret"
READ_BYTES = 1 << 20
SERVER_THREADS = 32
MAX_HEADER_BYTES = 64 << 10
# A worker's ffmpeg keeps its connection while x265 works through what it read; it reconnects
# after this much silence (-reconnect), but each reconnect costs a round trip.
IDLE_TIMEOUT_SECONDS = 300
# How often its connection loop wakes (cheroot: 0.5 s), and so how long a stop may wait for it.
WAKE_SECONDS = 0.05
MIN_FREE_BYTES = 256 << 20  # left on the work folder's disk after an upload
ARRIVING_SUFFIX = ".arriving"


@dataclass(frozen=True)
class Offered:
    """A file workers may read and send segments for: the coordinator's paths, never a request's."""

    source: Path
    work_dir: Path
    chunks: int


class Offers:
    """The files on offer, by work id; shared by the driver's thread and the server's."""

    def __init__(self) -> None:
        self._files: dict[str, Offered] = {}
        self._lock = threading.Lock()

    def put(self, work_id: str, offered: Offered) -> None:
        with self._lock:
            self._files[work_id] = offered

    def drop(self, work_id: str) -> None:
        with self._lock:
            self._files.pop(work_id, None)

    def get(self, work_id: str) -> Offered | None:
        with self._lock:
            return self._files.get(work_id)


class _Refused(HTTPException):
    """A refusal with a one-line reason in its body."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code

    def get_body(self, environ: Any = None, scope: Any = None) -> str:
        return f"{self.description}\n"

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "text/plain; charset=utf-8")]


class _Pattern(BaseConverter):
    """A path part that must match a pattern: `<pattern('[0-9a-f]{32}'):attempt>`."""

    def __init__(self, url_map: Map, pattern: str) -> None:
        super().__init__(url_map)
        self.regex = pattern


_WORK_ID = "<pattern('[0-9a-f]{16}-[0-9a-f]{8}'):work_id>"
_CHUNK = f"{_WORK_ID}/<int:index>/<pattern('[0-9a-f]{{32}}'):attempt>"
ROUTES = Map([
    Rule(f"{transfer.API}/{_WORK_ID}/source", endpoint="source", methods=["GET", "HEAD"]),
    Rule(f"{transfer.API}/{_CHUNK}/<any(segment, check):kind>", endpoint="upload", methods=["PUT"]),
    Rule(f"{transfer.API}/{_CHUNK}/commit", endpoint="commit", methods=["POST"]),
], converters={"pattern": _Pattern})  # fmt: skip


def part_name(index: int, attempt: str, kind: str) -> str:
    """An upload's name in the work folder once it arrived whole, before its commit."""
    name = f"{segment_name(index)}.{attempt}.part"
    return name + verify.CHECK_SUFFIX if kind == transfer.CHECK else name


class TransferApp:
    """The WSGI app: one file's source in byte ranges, and its chunks' segments and checks back."""

    def __init__(self, secret: bytes, offers: Offers, connection: redis.Redis) -> None:
        self.secret = secret
        self.offers = offers
        self.connection = connection

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, arguments = ROUTES.bind_to_environ(environ).match()
            offered = self._authorized(request, arguments["work_id"])
            if endpoint == "source":
                return self._source(request, offered, arguments["work_id"], start_response)
            if arguments["index"] >= offered.chunks:
                raise _Refused(404, f"file {arguments['work_id']} has no chunk {arguments['index']}")
            response = (self._upload(request, offered, **arguments) if endpoint == "upload"
                        else self._commit(offered, **arguments))  # fmt: skip
        except HTTPException as refusal:
            response = refusal.get_response(environ)
        return response(environ, start_response)

    def _authorized(self, request: Request, work_id: str) -> Offered:
        offered = self.offers.get(work_id)
        if offered is None:
            raise _Refused(404, f"file {work_id} is not being encoded here (finished, cancelled or unknown)")
        given = transfer.bearer(request.headers.get(transfer.AUTHORIZATION))
        if given is None or not transfer.token_matches(self.secret, work_id, given):
            raise _Refused(403, f"the token does not open file {work_id}")
        return offered

    def _source(self, request: Request, offered: Offered, work_id: str,
                start_response: Callable[..., Any]) -> Iterable[bytes]:  # fmt: skip
        try:
            response = send_file(offered.source, request.environ, mimetype="application/octet-stream",
                                 conditional=True, etag=False, max_age=None)  # fmt: skip
        except OSError as error:
            raise _Refused(410, f"file {work_id}: the source is unreadable ({error.strerror})") from None
        body = response(request.environ, start_response)
        return _Counted(body, lambda sent: self._count(request, work_id, sent=sent))

    def _upload(self, request: Request, offered: Offered, work_id: str, index: int, attempt: str,
                kind: str) -> Response:  # fmt: skip
        # Only the chunk's newest attempt may send (its commit is checked again, under the fence).
        if attempt != state.newest_attempt(self.connection, state.chunk_key(work_id, index)):
            raise _Refused(409, f"chunk {index} of file {work_id}: {transfer.SUPERSEDED}")
        length = request.content_length
        if length is None or length > transfer.MAX_UPLOAD_BYTES[kind]:
            raise _Refused(411 if length is None else 413, f"a {kind} upload needs a Content-Length of at "
                           f"most {transfer.MAX_UPLOAD_BYTES[kind]} bytes")  # fmt: skip
        expected = (request.headers.get(transfer.SHA256_HEADER) or "").lower()
        if not transfer.TOKEN.fullmatch(expected):  # 64 hex digits, as a token
            raise _Refused(400, f"a {kind} upload needs its SHA-256 in {transfer.SHA256_HEADER}")
        if shutil.disk_usage(offered.work_dir).free < length + MIN_FREE_BYTES:
            raise _Refused(507, f"chunk {index} of file {work_id}: no room for the {kind} on the coordinator")
        final = offered.work_dir / part_name(index, attempt, kind)
        descriptor, arriving_name = tempfile.mkstemp(prefix=final.name + ".", suffix=ARRIVING_SUFFIX,
                                                     dir=offered.work_dir)  # fmt: skip
        arriving = Path(arriving_name)
        digest = hashlib.sha256()
        received = 0
        try:
            with open(descriptor, "wb") as out:
                stream = request.environ["wsgi.input"]
                while received < length:
                    block = stream.read(min(READ_BYTES, length - received))
                    if not block:
                        break
                    digest.update(block)
                    out.write(block)
                    received += len(block)
            if received != length or digest.hexdigest() != expected:
                for other in transfer.UPLOAD_KINDS:  # a worker cut off here sends nothing more
                    (offered.work_dir / part_name(index, attempt, other)).unlink(missing_ok=True)
                raise _Refused(400, f"chunk {index} of file {work_id}: the {kind} arrived with {received} "
                               f"of {length} bytes or another checksum; send it again")  # fmt: skip
            os.replace(arriving, final)
        except OSError as error:
            raise _Refused(507, f"chunk {index} of file {work_id}: cannot store the {kind} "
                           f"({error.strerror})") from None  # fmt: skip
        finally:
            arriving.unlink(missing_ok=True)
            self._count(request, work_id, received=received, index=index)
        return Response(f"{kind} of chunk {index} received\n", 201, content_type="text/plain")

    def _commit(self, offered: Offered, work_id: str, index: int, attempt: str) -> Response:
        segment = offered.work_dir / segment_name(index)
        parts = verify.into_place(offered.work_dir / part_name(index, attempt, transfer.SEGMENT),
                                  offered.work_dir / part_name(index, attempt, transfer.CHECK), segment)
        if not all(part.exists() for part in parts):
            if all(final.exists() for final in parts.values()) and \
                    state.newest_attempt(self.connection, state.chunk_key(work_id, index)) == attempt:
                # Asked again after the answer got lost: this attempt's commit is what is there.
                return Response(f"chunk {index} committed\n", 200, content_type="text/plain")
            raise _Refused(409, f"chunk {index} of file {work_id}: send the segment and its check first")
        try:
            with state.commit_fence(self.connection, state.chunk_key(work_id, index), attempt) as allowed:
                if allowed:
                    for part, final in parts.items():
                        os.replace(part, final)
        except FileNotFoundError:  # the same commit asked twice at once: the other one did it
            raise _Refused(409, f"chunk {index} of file {work_id}: committed by another request") from None
        if not allowed:
            for part in parts:
                part.unlink(missing_ok=True)
            raise _Refused(409, f"chunk {index} of file {work_id}: {transfer.SUPERSEDED}")
        return Response(f"chunk {index} committed\n", 200, content_type="text/plain")

    def _count(self, request: Request, work_id: str, *, sent: int = 0, received: int = 0,
               index: int | None = None) -> None:  # fmt: skip
        """The bytes a request moved, by worker and chunk, as the request names them (for statistics)."""
        worker = request.headers.get(transfer.WORKER_HEADER, "")
        chunk = request.headers.get(transfer.CHUNK_HEADER, "")
        if index is None and re.fullmatch(r"[0-9]{1,7}", chunk):
            index = int(chunk)
        with contextlib.suppress(redis.exceptions.RedisError):
            count_moved(self.connection, worker if transfer.WORKER_NAME.fullmatch(worker) else None,
                        work_id, index, sent=sent, received=received)  # fmt: skip


class _Counted:
    """A response body that reports the bytes it gave once the server closes it."""

    def __init__(self, body: Iterable[bytes], report: Callable[[int], None]) -> None:
        self.body = body
        self.report = report
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for block in self.body:
            self.sent += len(block)
            yield block

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            self.report(self.sent)


def load_secret(work_root: Path) -> bytes:
    """The coordinator's secret, kept (owner-only) in its work folder so that tokens outlive a restart."""
    path = work_root / SECRET_FILE_NAME
    with contextlib.suppress(FileNotFoundError):
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    work_root.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(secret)
    return secret


def address_towards(redis_url: str) -> str:
    """This machine's address on the way to Redis: where workers that reach Redis can reach us too."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix" or not parts.hostname:
        return "127.0.0.1"
    family = socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:  # connect() sends nothing for UDP
            probe.connect((parts.hostname, parts.port or 6379))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def tls_files(redis_url: str) -> tuple[str, str] | None:
    """The certificate and key of a rediss:// URL (ssl_certfile, ssl_keyfile), which the server uses too."""
    parts = urlsplit(redis_url)
    query = parse_qs(parts.query)
    cert, key = query.get("ssl_certfile", [None])[0], query.get("ssl_keyfile", [None])[0]
    return (cert, key) if parts.scheme == "rediss" and cert and key else None


class ChunkServer:
    """The app on cheroot in a thread, and the offers: what the driver calls as files come and go."""

    def __init__(self, connection: redis.Redis, work_root: Path, host: str, port: int, *,
                 advertise_url: str | None = None, tls: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.connection = connection
        self.offers = Offers()
        self.secret = load_secret(work_root)
        # Workers told another address (--advertise-url) would find whatever else holds the port.
        self.server = _bind(TransferApp(self.secret, self.offers, connection), host, port, tls,
                            fall_back=advertise_url is None)  # fmt: skip
        bound_host, bound_port = self.server.bind_addr[:2]
        self.url = advertise_url or transfer.base_url("https" if tls else "http", host, bound_port)
        self._thread = threading.Thread(target=self.server.serve, name="ute-chunk-server", daemon=True)
        told = self.url.replace("://:", "://<the host they reach Redis at>:")
        log.info("workers without the shared folder get chunks from %s (listening on %s:%d)",
                 told, bound_host, bound_port)  # fmt: skip

    def __enter__(self) -> ChunkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._thread.join(timeout=10)

    def offer(self, work_id: str, offered: Offered, *, again: bool = False) -> None:
        """Serve the file to workers, and tell them how in Redis (again: only if Redis lost it)."""
        self.offers.put(work_id, offered)
        ticket = transfer.Ticket(self.url, transfer.token(self.secret, work_id))
        save_ticket(self.connection, work_id, ticket.to_json(), only_if_missing=again)

    def withdraw(self, work_id: str) -> None:
        self.offers.drop(work_id)
        with contextlib.suppress(redis.exceptions.RedisError):
            drop_ticket(self.connection, work_id)


@contextlib.contextmanager
def chunk_server(connection: redis.Redis, redis_url: str, work_root: Path, options: transfer.ServerOptions,
                 redis_listens_on: str | None = None) -> Iterator[ChunkServer | None]:  # fmt: skip
    """The running server (None when switched off). It listens where the Redis does unless told
    otherwise (redis_listens_on: a private Redis's bind address), and speaks TLS with the
    certificate of a rediss:// URL."""
    if not options.enabled:
        yield None
        return
    host = options.host or redis_listens_on or address_towards(redis_url)
    if urlsplit(redis_url).scheme == "rediss" and not tls_files(redis_url):
        log.warning("Redis speaks TLS but the chunk server cannot (no ssl_certfile and ssl_keyfile in "
                    "the Redis URL): chunks and tokens go to network workers unencrypted")  # fmt: skip
    server = ChunkServer(connection, work_root, host, options.port, advertise_url=options.advertise_url,
                         tls=tls_files(redis_url))  # fmt: skip
    with server:
        yield server


def _bind(app: TransferApp, host: str, port: int, tls: tuple[str, str] | None, *,
          fall_back: bool) -> wsgi.Server:  # fmt: skip
    """A listening server on host:port, or (fall_back) on a free port when that one is taken (logged)."""
    for attempt_port in (port, 0) if port and fall_back else (port,):
        server = wsgi.Server((host, attempt_port), app, numthreads=SERVER_THREADS,
                             server_name="ute", timeout=IDLE_TIMEOUT_SECONDS)  # fmt: skip
        server.max_request_header_size = MAX_HEADER_BYTES  # cheroot's default: no limit
        server.expiration_interval = WAKE_SECONDS
        if tls:
            try:
                server.ssl_adapter = BuiltinSSLAdapter(*tls)
            except (OSError, ssl.SSLError) as error:
                raise UteError(f"cannot use {tls[0]} and {tls[1]} for the chunk server: {error}") from None
        try:
            server.prepare()
            return server
        except OSError as error:
            if attempt_port == 0 or not fall_back:
                raise UteError(f"the chunk server cannot listen on {host}: {error}") from None
            log.warning("port %d on %s is taken: the chunk server takes a free one", port, host)
    raise AssertionError("unreachable")
