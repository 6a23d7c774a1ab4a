"""What a worker of the swarm could try against the coordinator's chunk server, run from the worker's
machine as the worker's user: `python transfer_attacks.py REDIS_URL SOURCE_PATH`. Prints one JSON
object: each attempt and the HTTP status it got (or whether the path was readable)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import uuid
from urllib.parse import urlsplit

from ute import snapshot, state, transfer


def main() -> None:
    redis_url, source_path = sys.argv[1], sys.argv[2]
    connection = state.connect(redis_url)
    [first, second] = sorted(job["work_id"] for job in snapshot.snapshot(connection)["jobs"])
    ticket = transfer.Ticket.from_json(state.load_ticket(connection, first))
    ticket = ticket.on_worker(connection.connection_pool.connection_kwargs["host"])
    other = transfer.Ticket.from_json(state.load_ticket(connection, second))
    url = urlsplit(ticket.url)

    def status(method: str, path: str, token: str, body: bytes = b"", headers: dict[str, str] | None = None
               ) -> int:  # fmt: skip
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        connection.request(method, path, body=body or None,
                           headers={"Authorization": f"Bearer {token}", **(headers or {})})  # fmt: skip
        return connection.getresponse().status

    body = b"not the segment" * 1000
    stale, attempt = "0" * 32, uuid.uuid4().hex
    state.claim_chunk(connection, state.chunk_key(first, 0), attempt)  # as a worker taking chunk 0 does
    print(json.dumps({
        "source readable here": os.access(source_path, os.R_OK),
        "own file": status("GET", transfer.source_path(first), ticket.token, headers={"Range": "bytes=0-99"}),
        "another file's token": status("GET", transfer.source_path(first), other.token),
        "a token for another file": status("GET", transfer.source_path(second), ticket.token),
        "no token": status("GET", transfer.source_path(first), ""),
        "../ in the path": status("GET", "/v1/../../../etc/passwd", ticket.token),
        "%2e%2e in the path": status("GET", "/v1/%2e%2e/%2e%2e/etc/passwd", ticket.token),
        "..%2f after the id": status("GET", f"/v1/{first}/..%2f..%2f..%2fetc%2fpasswd", ticket.token),
        "an absolute path": status("GET", f"/v1/{first}//etc/passwd", ticket.token),
        "an upload with another checksum": status(
            "PUT", transfer.upload_path(first, 0, attempt, transfer.SEGMENT), ticket.token, body,
            {transfer.SHA256_HEADER: hashlib.sha256(body[:-1]).hexdigest()}),
        "an upload for an attempt that is not the newest": status(
            "PUT", transfer.upload_path(first, 0, stale, transfer.SEGMENT), ticket.token, body,
            {transfer.SHA256_HEADER: hashlib.sha256(body).hexdigest()}),
        "a commit of nothing": status("POST", transfer.commit_path(first, 0, attempt), ticket.token),
    }))


if __name__ == "__main__":
    main()
