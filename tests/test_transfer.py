"""Chunks over the network: the coordinator's chunk server (real cheroot, real Redis, real HTTP) and a
real worker that cannot see the work folder encoding a file through it."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from conftest import run_ute, spawn, start_worker, wait_for
from hypothesis import given
from hypothesis import strategies as st
from media import frame_hashes, make_clip

from ute import chunkclient, chunkserver, commands, pipeline, runner, state, tools, transfer
from ute.errors import EncodeError
from ute.plan import Chunk, segment_name
from ute.probe import count_frames, probe
from ute.settings import EncodeSettings
from ute.verify import CHECK_SUFFIX

WORK_ID = "0123456789abcdef-01234567"
OTHER_WORK_ID = "fedcba9876543210-76543210"


@pytest.fixture
def server(clean_redis: str, tmp_path: Path) -> Iterator[tuple[chunkserver.ChunkServer, Path, Path]]:
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    work_dir = tmp_path / ".ute-work" / WORK_ID
    work_dir.mkdir(parents=True)
    connection = state.connect(clean_redis)
    options = transfer.ServerOptions(host="127.0.0.1", port=0)
    with chunkserver.chunk_server(connection, clean_redis, tmp_path / ".ute-work", options) as running:
        assert running is not None
        running.offer(WORK_ID, chunkserver.Offered(source, work_dir, chunks=3))
        running.offer(OTHER_WORK_ID, chunkserver.Offered(source, work_dir, chunks=3))
        yield running, source, work_dir


def request(server: chunkserver.ChunkServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    host, port = server.server.bind_addr[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def auth(server: chunkserver.ChunkServer, work_id: str = WORK_ID) -> dict[str, str]:
    return {"Authorization": f"Bearer {transfer.token(server.secret, work_id)}"}


def upload(server: chunkserver.ChunkServer, index: int, attempt: str, kind: str, data: bytes,
           checksum: str | None = None) -> int:  # fmt: skip
    headers = {**auth(server), transfer.SHA256_HEADER: checksum or hashlib.sha256(data).hexdigest()}
    status, _ = request(server, "PUT", transfer.upload_path(WORK_ID, index, attempt, kind), data, headers)
    return status


def test_the_ticket_in_redis_opens_the_source_in_byte_ranges(server, clean_redis: str) -> None:
    running, source, _ = server
    ticket = transfer.Ticket.from_json(state.load_ticket(state.connect(clean_redis), WORK_ID))
    assert ticket.url == running.url and ticket.token == transfer.token(running.secret, WORK_ID)
    status, body = request(running, "GET", transfer.source_path(WORK_ID),
                           headers={**auth(running), "Range": "bytes=1000-1999", "X-UTE-Chunk": "2",
                                    "X-UTE-Worker": "w1"})  # fmt: skip
    assert status == 206 and body == source.read_bytes()[1000:2000]
    moved = wait_for(lambda: state.chunks_moved(state.connect(clean_redis), WORK_ID).get(2), "the count")
    assert moved == {"sent": 1000, "received": 0}
    assert state.workers_moved(state.connect(clean_redis), ["w1"])["w1"]["bytes_sent"] == 1000


def test_a_token_opens_its_own_file_only(server) -> None:
    running, _, _ = server
    assert request(running, "GET", transfer.source_path(WORK_ID))[0] == 403
    source = transfer.source_path(WORK_ID)
    assert request(running, "GET", source, headers=auth(running, OTHER_WORK_ID))[0] == 403
    assert request(running, "GET", transfer.source_path(OTHER_WORK_ID), headers=auth(running))[0] == 403
    assert request(running, "GET", transfer.source_path(OTHER_WORK_ID),
                   headers=auth(running, OTHER_WORK_ID))[0] == 200  # fmt: skip
    running.withdraw(OTHER_WORK_ID)
    assert request(running, "GET", transfer.source_path(OTHER_WORK_ID),
                   headers=auth(running, OTHER_WORK_ID))[0] == 404  # fmt: skip


@pytest.mark.parametrize("path", [
    "/v1/../../../etc/passwd", "/v1/%2e%2e/%2e%2e/etc/passwd", f"/v1/{WORK_ID}/../../source.bin",
    f"/v1/{WORK_ID}/source/..%2f..%2fsource.bin", "//etc/passwd", f"/v1/{WORK_ID}%2f..%2fx/source",
    f"/v1/{WORK_ID}/0/{'a' * 32}/..%2f..%2fescape", f"/v1/{WORK_ID}/0/{'a' * 31}/segment",
])  # fmt: skip
def test_no_request_names_a_path(server, path: str, tmp_path: Path) -> None:
    running, _, _ = server
    for method in ("GET", "PUT", "POST"):
        headers = {**auth(running), transfer.SHA256_HEADER: "0" * 64}
        status, _ = request(running, method, path, b"x" * 10, headers)
        assert status in (400, 404, 405), (method, path, status)
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.rglob("*.part*"))


def test_a_segment_is_committed_only_whole_and_only_by_the_newest_attempt(server, clean_redis: str) -> None:
    running, _, work_dir = server
    connection = state.connect(clean_redis)
    older, newer = uuid.uuid4().hex, uuid.uuid4().hex
    segment, check = b"segment bytes" * 1000, b"check bytes"
    state.claim_chunk(connection, state.chunk_key(WORK_ID, 1), older)
    assert upload(running, 1, older, "segment", segment, checksum="0" * 64) == 400  # another checksum
    assert not list(work_dir.iterdir())
    assert upload(running, 1, older, "segment", segment) == 201
    assert request(running, "POST", transfer.commit_path(WORK_ID, 1, older), b"", auth(running))[0] == 409
    assert upload(running, 1, older, "check", check) == 201
    state.claim_chunk(connection, state.chunk_key(WORK_ID, 1), newer)  # the chunk was requeued meanwhile
    assert request(running, "POST", transfer.commit_path(WORK_ID, 1, older), b"", auth(running))[0] == 409
    assert not list(work_dir.iterdir()), "the superseded attempt's parts are gone"
    assert upload(running, 1, older, "segment", segment) == 409  # nothing more of it is taken
    assert upload(running, 1, newer, "segment", segment) == upload(running, 1, newer, "check", check) == 201
    assert request(running, "POST", transfer.commit_path(WORK_ID, 1, newer), b"", auth(running))[0] == 200
    committed = sorted(path.name for path in work_dir.iterdir())
    assert committed == [segment_name(1), segment_name(1) + CHECK_SUFFIX]
    assert (work_dir / segment_name(1)).read_bytes() == segment
    # The answer got lost and the worker asks again: it was committed, and nothing changes.
    assert request(running, "POST", transfer.commit_path(WORK_ID, 1, newer), b"", auth(running))[0] == 200
    assert upload(running, 3, newer, "segment", segment) == 404  # the file has 3 chunks


def test_an_upload_cut_short_leaves_nothing(server, clean_redis: str) -> None:
    running, _, work_dir = server
    attempt = uuid.uuid4().hex
    state.claim_chunk(state.connect(clean_redis), state.chunk_key(WORK_ID, 0), attempt)
    body = b"x" * 500_000
    host, port = running.server.bind_addr[:2]
    with socket.create_connection((host, port)) as raw:
        head = (f"PUT {transfer.upload_path(WORK_ID, 0, attempt, 'segment')} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {transfer.token(running.secret, WORK_ID)}\r\n"
                f"{transfer.SHA256_HEADER}: {hashlib.sha256(body).hexdigest()}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        raw.sendall(head.encode() + body[:200_000])
        wait_for(lambda: list(work_dir.iterdir()), "the upload to begin")
    wait_for(lambda: not list(work_dir.iterdir()), "the cut upload to be dropped", timeout=60)


def test_the_secret_outlives_a_restart_and_stays_private(tmp_path: Path) -> None:
    first = chunkserver.load_secret(tmp_path)
    assert chunkserver.load_secret(tmp_path) == first and len(first) == 32
    assert (tmp_path / chunkserver.SECRET_FILE_NAME).stat().st_mode & 0o077 == 0


@given(st.text(max_size=80))
def test_a_ticket_is_taken_only_as_ute_writes_it(url: str) -> None:
    token = "ab" * 32
    try:
        ticket = transfer.Ticket.from_json({"url": url, "token": token})
    except ValueError:
        return
    assert ticket.url.startswith(("http://", "https://"))
    assert "@" not in ticket.url and "/" not in ticket.url.split("://", 1)[1]


def test_a_coordinator_away_is_not_the_chunks_fault() -> None:
    assert transfer.is_coordinator_away(f"chunk 3 of file x: {transfer.COORDINATOR_AWAY}: cannot reach it")
    assert transfer.is_coordinator_away("chunk 3 of file x: ffmpeg exited 1: Server returned 404 Not Found")
    assert not transfer.is_coordinator_away("chunk 3 of file x: the encoder wrote 3 of 24 frames")


def test_a_ticket_refuses_what_ute_never_writes() -> None:
    good = {"url": "http://10.0.0.1:9183", "token": "ab" * 32}
    assert transfer.Ticket.from_json(good).url == good["url"]
    for bad in ({**good, "url": "file:///etc/passwd"}, {**good, "url": "http://h:1/x"},
                {**good, "url": "http://user@h:1"}, {**good, "token": "zz"}, {**good, "extra": 1}, [good]):
        with pytest.raises(ValueError):
            transfer.Ticket.from_json(bad)
    # The coordinator listens on every address: the worker fills in where it reaches Redis.
    assert transfer.Ticket("http://:9183", good["token"]).on_worker("10.1.2.3").url == "http://10.1.2.3:9183"
    assert transfer.Ticket("http://:9183", good["token"]).on_worker("fd00::1").url == "http://[fd00::1]:9183"


@pytest.mark.slow
def test_a_worker_without_the_shared_folder_encodes_over_the_network(clean_redis: str, tmp_path: Path
                                                                     ) -> None:  # fmt: skip
    """The worker's path map sends the coordinator's folders nowhere: it reads and writes over HTTP,
    and the output is frame-exact (lossless)."""
    source = make_clip(tmp_path / "clip.mp4", seconds=4, gop=24, audio_tracks=1)
    output = tmp_path / "out" / "clip.mkv"
    output.parent.mkdir()
    coordinator = spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                         "--workers", "0", "--redis-url", clean_redis, "--chunk-server-host", "127.0.0.1",
                         "--chunk-server-port", "0", "--x265-params", "lossless=1", "--preset", "ultrafast",
                         "--chunk-frames", "24"],
                        tmp_path / "encode.log")  # fmt: skip
    wait_for(lambda: "queueing 4 chunks" in (tmp_path / "encode.log").read_text(), "the chunks",
             process=coordinator, log=tmp_path / "encode.log")  # fmt: skip
    worker = start_worker(clean_redis, tmp_path / "worker.log", "--burst", "--name", "far-away",
                          "--path-map", f"{tmp_path}=/nowhere{tmp_path}")  # fmt: skip
    assert coordinator.wait(timeout=300) == 0, (tmp_path / "encode.log").read_text()
    worker.wait(timeout=60)
    assert frame_hashes(output) == frame_hashes(source)
    worker_log = (tmp_path / "worker.log").read_text()
    assert "no shared folder here; over the network from http://127.0.0.1:" in worker_log
    connection = state.connect(clean_redis)
    moved = state.workers_moved(connection, ["far-away"])["far-away"]
    assert moved["input"] == "network" and moved["bytes_received"] > 0
    assert moved["bytes_sent"] > 0, moved  # bench/transfer_bench.py measures how much per chunk
    per_chunk = state.chunks_moved(connection, status_work_id(clean_redis))
    assert sorted(per_chunk) == [0, 1, 2, 3] and all(c["sent"] and c["received"] for c in per_chunk.values())
    assert not list((tmp_path / "out").rglob("*.part*")) and not (tmp_path / "out" / ".ute-work").exists()


def status_work_id(redis_url: str) -> str:
    status = json.loads(run_ute("status", "--json", "--redis-url", redis_url).stdout)
    [job] = status["jobs"]
    assert job["state"] == "done"
    return str(job["work_id"])


def test_tls_with_the_certificate_of_the_rediss_url(clean_redis: str, tmp_path: Path) -> None:
    """A rediss:// URL's ssl_certfile and ssl_keyfile make the chunk server speak TLS; a worker checks it
    with its own URL's ssl_ca_certs, in ffmpeg (reading a chunk) and in Python (sending it back)."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca_file))
    rediss = f"rediss://127.0.0.1:6379/0?ssl_certfile={cert}&ssl_keyfile={key}"
    assert chunkserver.tls_files(rediss) == (str(cert), str(key))
    source = make_clip(tmp_path / "clip.mp4", seconds=2, gop=24)
    work_dir = tmp_path / ".ute-work" / WORK_ID
    work_dir.mkdir(parents=True)
    connection = state.connect(clean_redis)
    options = transfer.ServerOptions(host="127.0.0.1", port=0)
    with chunkserver.chunk_server(connection, rediss, work_dir, options) as running:
        assert running is not None and running.url.startswith("https://127.0.0.1:")
        running.offer(WORK_ID, chunkserver.Offered(source, work_dir, chunks=2))
        ticket = transfer.Ticket.from_json(state.load_ticket(connection, WORK_ID))
        coordinator = chunkclient.Coordinator(ticket, "tls-worker", str(ca_file))
        info = probe(source)
        [spec] = pipeline.chunk_specs(info, [Chunk(1, 24, 48)], WORK_ID)
        segment = tmp_path / "segment.mkv"
        remote = coordinator.source(WORK_ID, 1)
        runner.run(commands.encode_chunk(tools.ffmpeg(), remote, info.video_index, spec.input,
                                         EncodeSettings(preset="ultrafast"), segment))  # fmt: skip
        assert count_frames(segment) == 24
        check = tmp_path / "check.npz"
        check.write_bytes(b"check")
        attempt = uuid.uuid4().hex
        state.claim_chunk(connection, state.chunk_key(WORK_ID, 1), attempt)
        chunkclient.send_segment(coordinator, WORK_ID, 1, attempt, segment, check, "chunk 1")
        assert (work_dir / segment_name(1)).read_bytes() == segment.read_bytes()
        untrusting = chunkclient.Coordinator(ticket, "tls-worker", None)  # the system's authorities only
        with pytest.raises(EncodeError, match="certificate is not trusted here"):
            chunkclient.send_segment(untrusting, WORK_ID, 1, attempt, segment, check, "chunk 1")
        argv = commands.encode_chunk(tools.ffmpeg(), untrusting.source(WORK_ID, 1), info.video_index,
                                     spec.input, EncodeSettings(preset="ultrafast"), segment)  # fmt: skip
        refused = runner.run(argv, check=False)
        assert refused.returncode != 0


def test_a_ticket_sends_ffmpeg_only_where_the_worker_reaches_redis(clean_redis: str, monkeypatch) -> None:
    """A ticket is a Redis record: it cannot send a worker's ffmpeg to any other host unless the
    worker allows that host, nor to plain HTTP when Redis speaks TLS."""
    connection = state.connect(clean_redis)  # redis://127.0.0.1:…
    token = "ab" * 32
    state.save_ticket(connection, WORK_ID, {"url": "http://169.254.169.254:80", "token": token})
    with pytest.raises(EncodeError, match=r"--allow-chunk-server 169\.254\.169\.254"):
        chunkclient.coordinator_for(connection, WORK_ID, "w", "chunk 0")
    monkeypatch.setenv("UTE_CHUNK_SERVERS", "169.254.169.254;other")
    assert chunkclient.coordinator_for(connection, WORK_ID, "w", "chunk 0").ticket.url == "http://169.254.169.254:80"
    state.save_ticket(connection, WORK_ID, {"url": "http://:9183", "token": token})
    assert chunkclient.coordinator_for(connection, WORK_ID, "w", "chunk 0").ticket.url == "http://127.0.0.1:9183"
    over_tls = state.connect("rediss://127.0.0.1:6379/0")
    with pytest.raises(EncodeError, match="Redis speaks TLS but the coordinator's chunk server does not"):
        chunkclient._check_reachable_as_told(transfer.Ticket("http://127.0.0.1:9183", token), "127.0.0.1",
                                             over_tls, "chunk 0")  # fmt: skip
    chunkclient._check_reachable_as_told(transfer.Ticket("https://127.0.0.1:9183", token), "127.0.0.1",
                                         over_tls, "chunk 0")  # fmt: skip
