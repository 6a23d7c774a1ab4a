"""Look at `ute dashboard` in a real headless browser: a screenshot of its queue page.

    apt-get install chromium          # Debian's; nothing is downloaded by this script
    python scripts/dashboard_screenshot.py [--out dashboard.png]

Starts a private Redis with a few queued UTE jobs (one with a hostile file name), `ute dashboard`
with a password on 127.0.0.1, and Chromium headless; prints where the PNG is.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ute import runner, state, submit
from ute.jobs import ChunkSpec, FileSpec
from ute.redis_server import private_redis

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1280,800", "--virtual-time-budget=5000")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium: apt-get install chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch, private_redis(Path(scratch) / "redis") as url:
        connection = state.connect(url)
        hostile = FileSpec("/v/<img src=x onerror=alert(1)>.mkv", 0, "/w", {})
        for queue_name in state.QUEUES:
            specs = [ChunkSpec(f"demo{queue_name}", n, n * 240, 240, n * 10_000_000) for n in range(3)]
            submit.submit_chunks(connection, hostile, specs, queue_name)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dashboard = runner.spawn([sys.executable, "-m", "ute.cli", "dashboard", "--port", str(port),
                                  "--redis-url", url, "--username", "ute", "--password", "look"])  # fmt: skip
        try:
            time.sleep(2)
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={scratch}/chromium",
                            f"--screenshot={args.out.absolute()}",
                            f"http://ute:look@127.0.0.1:{port}/0/view/jobs/low/queued/8/asc/1"],
                           check=True, timeout=120, capture_output=True)  # fmt: skip
        finally:
            runner.stop([dashboard])
    print(f"screenshot: {args.out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
