"""UTE's page behind `ute dashboard`: the chunk map (pure), the swarm's fps history, and the HTTP
API (auth, CSRF, actions, errors) against the real test Redis. The page itself, in a real browser
against a real `ute serve`, is tests/test_web.py."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rq.job import JobStatus
from werkzeug.test import Client

from ute import dashboard, state, submit
from ute.chunkmap import CellState, JobFacts, cells
from ute.history import History, HistoryEntry, find_history
from ute.jobs import ChunkSpec, FileSpec
from ute.redis_server import private_redis

HOSTILE = "\"'><img src=x onerror=alert(1)>.mkv"
FILE_ID = "0123456789abcdef"
WORK_ID = f"{FILE_ID}-00c0ffee"
CREDENTIALS = {"Authorization": "Basic " + base64.b64encode(b"ute:look").decode()}

statuses = st.sampled_from([None, *JobStatus])


@given(st.lists(st.tuples(st.integers(1, 500), statuses, st.integers(0, 3), st.integers(0, 600),
                          st.booleans()), max_size=40))  # fmt: skip
def test_the_chunk_map_has_one_cell_per_chunk_in_a_state_a_user_would_name(
    chunks: list[tuple[int, JobStatus | None, int, int, bool]],
) -> None:
    frames = [frames for frames, *_ in chunks]
    jobs = {index: JobFacts(done, "w1", retry) for index, (_, _, _, done, retry) in enumerate(chunks)}
    generations = {index: tries for index, (_, _, tries, _, _) in enumerate(chunks)}
    mapped = cells(frames, [status for _, status, *_ in chunks], generations, jobs, {})
    assert [cell.index for cell in mapped] == list(range(len(chunks)))
    for cell, (frames_of_chunk, status, tries, _, retry) in zip(mapped, chunks, strict=True):
        assert 0 <= cell.frames_done <= cell.frames == frames_of_chunk
        assert cell.tries == tries
        expected = {JobStatus.FINISHED: CellState.DONE, JobStatus.STARTED: CellState.ENCODING,
                    JobStatus.FAILED: CellState.REQUEUED if retry else CellState.FAILED,
                    None: CellState.WAITING, JobStatus.STOPPED: CellState.WAITING,
                    JobStatus.CANCELED: CellState.WAITING}.get(status)  # fmt: skip
        if expected is None:  # queued, scheduled, deferred, created
            expected = CellState.REQUEUED if tries else CellState.QUEUED
        assert cell.state is expected
        assert (cell.frames_done == cell.frames) if cell.state is CellState.DONE else True
        assert cell.worker == ("w1" if cell.state in (CellState.ENCODING, CellState.FAILED) else None)
    assert all(cell.state is CellState.DONE for cell in cells(frames, [None] * len(frames), {}, {}, {},
                                                               all_done=True))  # fmt: skip


def test_a_done_cell_names_the_worker_that_encoded_its_segment_and_its_size() -> None:
    [cell] = cells([24], [JobStatus.FINISHED], {}, {}, {0: {"bytes": 1234, "worker": "w2", "host": "h"}})
    assert (cell.state, cell.worker, cell.bytes) == (CellState.DONE, "w2", 1234)


def test_the_swarm_fps_history_covers_the_last_hour_in_ten_second_buckets(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    now = 1_800_000_005.0
    state.count_encoded_frames(connection, 240, now=now - 20)  # bucket now-25 .. now-15
    state.count_encoded_frames(connection, 60, now=now - 18)
    state.count_encoded_frames(connection, 999, now=now)  # the current bucket is not over: not shown
    state.count_encoded_frames(connection, 0, now=now)
    history = state.swarm_fps_history(connection, now=now)
    assert len(history) == state.SWARM_HISTORY_SECONDS // state.SWARM_BUCKET_SECONDS
    assert history[-1] == (1_800_000_000 - 10, 0.0) and history[-2] == (1_800_000_000 - 20, 30.0)
    assert sum(fps for _, fps in history) == 30.0
    ttl = connection.ttl(f"{state.KEY_PREFIX}frames:{1_800_000_000 - 20}")
    assert state.SWARM_HISTORY_SECONDS < ttl <= state.SWARM_HISTORY_SECONDS + 20


@pytest.fixture
def farm(clean_redis: str, tmp_path: Path) -> dict[str, Any]:
    """A file record with three chunk jobs (one finished, with its segment) and a history."""
    connection = state.connect(clean_redis)
    spec = FileSpec(f"/videos/{HOSTILE}", 0, str(tmp_path / "work"), {})
    chunks = [ChunkSpec(WORK_ID, index, index * 24, 24, index * 1_000_000) for index in range(3)]
    state.save_file_record(connection, FILE_ID, source=spec.source, state="encoding", queue="low",
                           work_id=WORK_ID, chunk_frames=[24, 24, 24])  # fmt: skip
    job_ids = submit.submit_chunks(connection, spec, chunks, "low")
    [finished] = state.fetch_jobs(connection, [job_ids[1]])
    assert finished is not None
    finished.set_status(JobStatus.FINISHED)
    state.record_segment(connection, WORK_ID, 1, {"bytes": 4096, "worker": "w9", "host": "h"})
    outbox = tmp_path / "outbox"
    (outbox / ".ute-work").mkdir(parents=True)
    History(outbox / ".ute-work" / "history.sqlite").add(HistoryEntry(
        "fedcba9876543210", f"/videos/{HOSTILE}", "failed", error="chunk 2: <b>bad</b>", source_bytes=1000,
        log="== chunk 0 (x): failed on w\nboom"))  # fmt: skip
    app = dashboard.build_app(clean_redis, "ute", "look", tmp_path / "inbox", outbox)
    return {"connection": connection, "client": Client(app), "outbox": outbox}


def _csrf(client: Client) -> str:
    page = client.get("/", headers=CREDENTIALS).get_data(as_text=True)
    match = re.search(r'name="ute-csrf" content="([0-9a-f]{64})"', page)
    assert match, page
    return match.group(1)


def test_every_path_asks_for_the_credentials(farm: dict[str, Any]) -> None:
    client = farm["client"]
    for path in ("/", "/api/state", f"/api/files/{FILE_ID}/log", "/static/ute/page.js", "/rq/",
                 "/rq/0/data/workers.json"):  # fmt: skip
        assert client.get(path).status_code == 401, path
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ute:nope").decode()}
        assert client.get(path, headers=wrong).status_code == 401, path
        assert client.get(path, headers=CREDENTIALS).status_code == 200, path
    assert client.post(f"/api/files/{FILE_ID}/pause").status_code == 401


def test_the_page_allows_only_its_own_script_and_no_framing(farm: dict[str, Any]) -> None:
    response = farm["client"].get("/", headers=CREDENTIALS)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert farm["client"].get("/rq/", headers=CREDENTIALS).headers["X-Frame-Options"] == "DENY"


def test_the_state_has_the_files_chunk_map_workers_history_and_fps(farm: dict[str, Any]) -> None:
    state.count_encoded_frames(farm["connection"], 500, now=time.time() - 30)
    document = farm["client"].get("/api/state", headers=CREDENTIALS).get_json()
    [file] = document["jobs"]
    assert (file["id"], file["name"], file["state"], file["queue"]) == (FILE_ID, HOSTILE, "encoding", "low")
    assert file["bytes_done"] == 4096 and file["chunks_done"] == 1
    assert [cell["state"] for cell in file["chunk_map"]] == ["queued", "done", "queued"]
    assert file["chunk_map"][1]["worker"] == "w9"
    assert 0 < farm["connection"].ttl(f"{state.KEY_PREFIX}segments:{WORK_ID}") <= state.FILE_SPEC_TTL_SECONDS
    [row] = document["history"]
    assert (row["name"], row["outcome"], row["error"]) == (HOSTILE, "failed", "chunk 2: <b>bad</b>")
    assert len(document["fps_history"]) == 360 and sum(p["fps"] for p in document["fps_history"]) == 50.0


def test_actions_need_the_pages_csrf_token_and_do_what_the_cli_does(farm: dict[str, Any]) -> None:
    client, connection = farm["client"], farm["connection"]
    token = _csrf(client)
    url = f"/api/files/{FILE_ID}/pause"
    assert client.post(url, headers=CREDENTIALS).status_code == 403
    assert client.post(url, headers={**CREDENTIALS, "X-UTE-CSRF": "0" * 64}).status_code == 403
    assert (state.file_record(connection, FILE_ID) or {}).get("control", "") == ""

    headers = {**CREDENTIALS, "X-UTE-CSRF": token}
    answer = client.post(url, headers=headers)
    assert answer.status_code == 200 and HOSTILE in answer.get_json()["message"]
    assert (state.file_record(connection, FILE_ID) or {})["control"] == "pause"
    assert client.post(f"/api/files/{FILE_ID}/resume", headers=headers).status_code == 200
    moved = client.post(f"/api/files/{FILE_ID}/move", headers=headers, json={"queue": "high"})
    assert moved.status_code == 200, moved.get_json()
    assert (state.file_record(connection, FILE_ID) or {})["queue"] == "high"
    refused = client.post(f"/api/files/{FILE_ID}/move", headers=headers, json={"queue": "../etc"})
    assert refused.status_code == 409 and refused.get_json()["error"]
    assert client.post(f"/api/files/{FILE_ID}/cancel", headers=headers).status_code == 200
    assert (state.file_record(connection, FILE_ID) or {})["control"] == "cancel"

    unknown = client.post("/api/files/aaaaaaaaaaaaaaaa/pause", headers=headers)
    assert unknown.status_code == 409 and "aaaaaaaaaaaaaaaa" in unknown.get_json()["error"]
    assert client.post(f"/api/files/{FILE_ID}/explode", headers=headers).status_code == 404
    assert client.post("/api/files/..%2F..%2Fetc/pause", headers=headers).status_code == 404
    assert client.get("/api/files/not-an-id/log", headers=CREDENTIALS).status_code == 404


def test_a_files_log_comes_from_redis_or_the_history(farm: dict[str, Any]) -> None:
    client = farm["client"]
    from_history = client.get("/api/files/fedcba9876543210/log", headers=CREDENTIALS)
    assert from_history.mimetype == "text/plain"
    expected = f"== file fedcba9876543210: {HOSTILE}\n== chunk 0 (x): failed on w\nboom"
    assert from_history.get_data(as_text=True) == expected
    live = client.get(f"/api/files/{FILE_ID}/log", headers=CREDENTIALS).get_data(as_text=True)
    assert live.startswith(f"== file {FILE_ID}: {HOSTILE}\n== chunk 0 (ute-{WORK_ID}-chunk-00000): queued")
    missing = client.get("/api/files/aaaaaaaaaaaaaaaa/log", headers=CREDENTIALS)
    assert missing.status_code == 409 and "ute history" in missing.get_json()["error"]


def test_with_redis_gone_the_page_says_so_in_one_line_and_logs_come_from_the_history(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    with private_redis(tmp_path / "redis") as url:
        client = Client(dashboard.build_app(url, None, None, tmp_path / "inbox", outbox))
        assert client.get("/api/state").status_code == 200
    gone = client.get("/api/state")
    assert gone.status_code == 503 and "is `ute serve` running?" in gone.get_json()["error"]
    assert find_history(outbox) is None  # looking for the history never makes one
    (outbox / ".ute-work").mkdir(parents=True)
    History(outbox / ".ute-work" / "history.sqlite").add(HistoryEntry(FILE_ID, "/v/a.mkv", "done", log="ok"))
    assert client.get(f"/api/files/{FILE_ID}/log").get_data(as_text=True) == f"== file {FILE_ID}: a.mkv\nok"


def test_what_a_hostile_site_can_make_a_browser_send_is_refused(clean_redis: str, tmp_path: Path) -> None:
    """DNS rebinding (a Host that is not the dashboard's), a cross-site POST (rq-dashboard's
    buttons carry no CSRF token), and rq-dashboard's requeue-everything by GET."""
    app = dashboard.build_app(clean_redis, None, None, tmp_path / "inbox", tmp_path / "outbox",
                              dashboard.allowed_hosts("127.0.0.1"))  # fmt: skip
    client = Client(app)
    local = {"Host": "127.0.0.1:9181"}
    assert client.get("/", headers=local).status_code == 200
    assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200  # an SSH tunnel
    rebound = client.get("/api/state", headers={"Host": "attacker.example:9181"})
    assert rebound.status_code == 403 and b"--allow-host" in rebound.data
    assert client.get("/rq/requeue/low", headers=local).status_code == 403
    for cross_site in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = client.post("/rq/queue/low/queued/empty", headers={**local, **cross_site})
        assert answer.status_code == 403 and b"another site" in answer.data
    same_site = {**local, "Origin": "http://127.0.0.1:9181", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/rq/queue/low/queued/empty", headers=same_site).status_code == 200
    assert dashboard.allowed_hosts("0.0.0.0") is None
    assert dashboard.allowed_hosts("0.0.0.0", ["farm.lan"]) == {"127.0.0.1", "localhost", "::1", "farm.lan"}


def test_odd_requests_get_an_answer_not_a_crash(farm: dict[str, Any]) -> None:
    client = farm["client"]
    assert client.post(f"/api/files/{FILE_ID}/pause", headers={**CREDENTIALS, "X-UTE-CSRF": "é"}
                       ).status_code == 403  # fmt: skip
    headers = {**CREDENTIALS, "X-UTE-CSRF": _csrf(client)}
    answer = client.post(f"/api/files/{FILE_ID}/move", headers=headers, json=["high"])
    assert answer.status_code == 409 and "use high or low" in answer.get_json()["error"]
