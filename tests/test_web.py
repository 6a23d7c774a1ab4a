"""UTE's page in a real browser (Playwright driving Debian's chromium) while a real `ute serve`
encodes: progress, chunk map, pause/resume/move/cancel through the page (checked in Redis), the
history, rq-dashboard's Workers page, a hostile file name shown as text, and 401 without
credentials.

    apt-get install chromium      # `.ci/run` does this when it is missing
    pytest tests/test_web.py

Set UTE_SCREENSHOT_DIR to keep the page's screenshot (the README's is made so).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import spawn, wait_for
from media import make_clip
from rq.job import JobStatus

from ute import state
from ute.redis_server import free_port

pytestmark = pytest.mark.slow

HOSTILE = "\"'><img src=x onerror=alert(1)>.mkv"
USER, PASSWORD = "ute", "look"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def _chromium() -> str:
    found = next((path for path in CHROMIUM_PATHS if Path(path).exists()), None) or shutil.which("chromium")
    if found:
        return found
    if os.environ.get("UTE_REQUIRE_BROWSER"):
        pytest.fail("no chromium, and UTE_REQUIRE_BROWSER is set: apt-get install chromium")
    pytest.skip("no chromium: apt-get install chromium (`.ci/run` does)")


@pytest.fixture
def browser() -> Any:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def _chunk_jobs(connection: Any, work_id: str, count: int) -> list[JobStatus | None]:
    return [status for _, status in state.current_chunk_statuses(connection, work_id, range(count))]


def _queued_in(connection: Any, queue_name: str, work_id: str) -> list[str]:
    return [job_id for job_id in state.queue(queue_name, connection).get_job_ids() if work_id in job_id]


def test_the_page_shows_and_steers_a_real_encode(tmp_path: Path, clean_redis: str, browser: Any) -> None:
    from playwright.sync_api import expect

    connection = state.connect(clean_redis)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    small = make_clip(tmp_path / "small.mkv", seconds=1, size="320x180")
    big = make_clip(tmp_path / "big.mkv", seconds=60, size="960x540", gop=48)
    spawn([sys.executable, "-m", "ute.cli", "serve", "--inbox", str(inbox), "--outbox", str(outbox),
           "--plugins", "/nonexistent", "--settle-seconds", "1", "--workers", "2", "--redis-url", clean_redis,
           "--preset", "slow", "--chunk-frames", "48"], log_path=tmp_path / "serve.log")  # fmt: skip
    port = free_port()
    spawn([sys.executable, "-m", "ute.cli", "dashboard", "--port", str(port), "--redis-url", clean_redis,
           "--inbox", str(inbox), "--outbox", str(outbox), "--username", USER, "--password", PASSWORD],
          log_path=tmp_path / "dashboard.log")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    small.rename(inbox / small.name)

    stranger = browser.new_context()
    wait_for(lambda: _status(stranger, base) == 401, "the dashboard to answer 401 without credentials", 60)
    stranger.close()

    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD},
                                  viewport={"width": 1280, "height": 900})  # fmt: skip
    page = context.new_page()
    dialogs: list[str] = []
    problems: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)  # fmt: skip
    page.goto(base + "/")
    finished = page.locator("tr.history").filter(has_text="small.mkv")
    expect(finished).to_have_count(1, timeout=60_000)
    expect(finished.locator(".state-done")).to_have_text("done")
    big.rename(inbox / HOSTILE)

    row = page.locator("tr.file[data-state=encoding]").filter(has_text="onerror")
    expect(row).to_have_count(1, timeout=60_000)
    file_id = row.get_attribute("data-id")
    assert file_id and row.locator(".name div").first.inner_text() == HOSTILE  # text, not markup
    assert page.locator("main img, main script").count() == 0
    record = state.file_record(connection, file_id) or {}
    work_id, chunk_count = record["work_id"], len(json.loads(record["chunk_frames"]))
    assert chunk_count == 30  # 1440 frames in chunks of 48

    cells = page.locator(f"tr.chunks[data-id='{file_id}'] .cell")
    expect(cells).to_have_count(chunk_count)
    fill = row.locator(".bar .fill")
    first = _width(fill)
    wait_for(lambda: _width(fill) > first, "the progress bar to move", 120)
    expect(page.locator(f"tr.chunks[data-id='{file_id}'] .cell.encoding").first).to_be_visible()
    expect(page.locator("#workers tr.worker").filter(has_text="onerror")).not_to_have_count(0)
    expect(page.locator(f"tr.chunks[data-id='{file_id}'] .cell.done")).not_to_have_count(0, timeout=60_000)
    screenshot = tmp_path / "ute-dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("UTE_SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["UTE_SCREENSHOT_DIR"]) / screenshot.name)

    seen = state.current_chunk_statuses(connection, work_id, range(chunk_count))
    running = [job_id for job_id, status in seen if status == JobStatus.STARTED]
    job_page = context.new_page()  # rq-dashboard's page of a chunk job that a worker is encoding
    job_page.goto(f"{base}/rq/0/view/job/{running[0]}")
    expect(job_page.locator("body")).to_contain_text(f"of file {file_id}", timeout=30_000)
    job_page.close()

    # Pause: its queued chunks leave the queue, the running ones finish, no new one starts.
    row.locator("button[data-action=pause]").click()
    expect(page.locator(f"tr.file[data-id='{file_id}']")).to_have_attribute("data-state", "paused")
    wait_for(lambda: not _queued_in(connection, "low", work_id), "the paused file's chunks off the queue", 30)
    wait_for(lambda: JobStatus.STARTED not in _chunk_jobs(connection, work_id, chunk_count),
             "its running chunks to finish", 120)  # fmt: skip
    done_when_paused = _chunk_jobs(connection, work_id, chunk_count).count(JobStatus.FINISHED)
    page.wait_for_timeout(2000)
    statuses = _chunk_jobs(connection, work_id, chunk_count)
    assert JobStatus.STARTED not in statuses and statuses.count(JobStatus.FINISHED) == done_when_paused
    assert done_when_paused < chunk_count

    paused_row = page.locator(f"tr.file[data-id='{file_id}']")
    paused_row.locator("button[data-action=move]").click()  # low -> high
    wait_for(lambda: (state.file_record(connection, file_id) or {}).get("queue") == "high", "the move", 10)
    paused_row.locator("button[data-action=resume]").click()
    wait_for(lambda: _queued_in(connection, "high", work_id) or JobStatus.STARTED in _chunk_jobs(
        connection, work_id, chunk_count), "its chunks queued again, in high", 30)  # fmt: skip
    assert not _queued_in(connection, "low", work_id)
    expect(paused_row).to_have_attribute("data-state", "encoding")

    paused_row.locator("button[data-action=cancel]").click()
    expect(page.locator(f"tr.file[data-id='{file_id}']")).to_have_attribute("data-state", "cancelled",
                                                                             timeout=30_000)  # fmt: skip
    wait_for(lambda: not _queued_in(connection, "high", work_id), "the cancelled file's chunks gone", 30)
    assert (inbox / HOSTILE).exists()  # the source stays

    page.locator(f"tr.file[data-id='{file_id}'] button[data-action=log]").click()
    expect(page.locator("#log")).to_contain_text(f"== file {file_id}: {HOSTILE}")

    workers = context.new_page()
    workers.goto(base + "/rq/0/view/workers")
    expect(workers.locator("table#workers tbody")).not_to_contain_text("Loading", timeout=30_000)
    expect(workers.locator("table#workers tbody tr")).not_to_have_count(0)
    assert not dialogs, dialogs
    assert not problems, problems
    context.close()


def _status(context: Any, url: str) -> int | None:
    try:
        return context.request.get(url).status
    except Exception:  # not listening yet
        return None


def _width(fill: Any) -> float:
    return float(fill.evaluate("node => node.getBoundingClientRect().width"))
