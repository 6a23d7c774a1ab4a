"""`ute status` in a terminal: draws snapshot.snapshot() with rich, refreshed every second."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

import redis
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ute import snapshot

REFRESH_SECONDS = 1.0
STATE_STYLES = {"encoding": "cyan", "queued": "dim", "muxing": "magenta", "done": "green",
                "failed": "red", "busy": "cyan", "idle": "dim"}  # fmt: skip


def input_text(worker: dict[str, Any]) -> str:
    """How a worker reads and writes: "shared folder", or "network" with the bytes it moved."""
    how = worker.get("input") or ""
    if how != "network":
        return how
    return f"network ↓{megabytes(worker.get('bytes_sent'))} ↑{megabytes(worker.get('bytes_received'))}"


def megabytes(count: int | None) -> str:
    return f"{(count or 0) / 1e6:.1f} MB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def render(snap: dict[str, Any]) -> Group:
    busy = sum(1 for w in snap["workers"] if w["state"] == "busy")
    header = Text.assemble(
        ("UTE  ", "bold"), (f"{snap['swarm_fps']:.1f} fps", "bold cyan"),
        f"  workers {busy}/{len(snap['workers'])} busy  queue ETA {duration(snap.get('queue_eta_seconds'))}",
    )  # fmt: skip
    files = Table(expand=True, box=None, pad_edge=False)
    # The id under the name: what `ute logs|pause|cancel ID` take.
    files.add_column("file / id", ratio=3, min_width=len("0123456789abcdef"), no_wrap=True,
                     overflow="ellipsis")  # fmt: skip
    files.add_column("state", width=8)
    files.add_column("progress", ratio=2, min_width=10)
    files.add_column("chunks", justify="right", width=7)
    files.add_column("frames", justify="right", width=13)
    files.add_column("fps", justify="right", width=6)
    files.add_column("ETA", justify="right", width=7)
    for job in snap["jobs"]:
        total = max(job["frames_total"], 1)
        files.add_row(
            Text.assemble(job["name"], "\n", (job["id"], "dim")),
            Text(job["state"], STATE_STYLES.get(job["state"], "")),
            ProgressBar(total=total, completed=job["frames_done"]),
            f"{job['chunks_done']}/{job['chunks_total']}", f"{job['frames_done']}/{job['frames_total']}",
            f"{job['fps']:.1f}" if job["fps"] else "", duration(job["eta_seconds"]) if job["fps"] else "",
        )  # fmt: skip
    workers = Table(expand=True, box=None, pad_edge=False)
    workers.add_column("worker", ratio=2, no_wrap=True, overflow="ellipsis")
    workers.add_column("host", ratio=1, no_wrap=True, overflow="ellipsis")
    workers.add_column("chunk", ratio=2, no_wrap=True)
    workers.add_column("fps", justify="right", width=6)
    workers.add_column("CPU", justify="right", width=6)
    workers.add_column("mem", justify="right", width=7)
    workers.add_column("input", ratio=1, no_wrap=True, overflow="ellipsis")
    for worker in snap["workers"]:
        chunk = worker["chunk"]
        where = (f"#{chunk['index']} {chunk['frames_done']}/{chunk['frames']}" if chunk
                 else Text("idle", "dim"))  # fmt: skip
        workers.add_row(
            worker["name"], worker["host"], where, f"{worker['fps']:.1f}" if chunk else "",
            f"{worker['cpu_percent']:.0f}%" if worker.get("cpu_percent") is not None else "",
            f"{(worker.get('memory_bytes') or 0) / 2**20:.0f}M", Text(input_text(worker)),
        )  # fmt: skip
    if not snap["jobs"]:
        files = Text("no files: drop videos into the inbox", "dim")  # type: ignore[assignment]
    if not snap["workers"]:
        workers = Text("no workers: start ute-worker --redis-url URL", "dim")  # type: ignore[assignment]
    paused = [Text(f"farm paused: {snap['paused']}", "bold red")] if snap.get("paused") else []
    return Group(header, *paused, Text(""), files, Text(""), workers, Text("q to quit", "dim"))


@contextlib.contextmanager
def _keys() -> Iterator[None]:
    """Single keys without Enter, restored on the way out."""
    if not sys.stdin.isatty():
        yield
        return
    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        yield
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def _quit_pressed(timeout: float) -> bool:
    if not sys.stdin.isatty():
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and os.read(sys.stdin.fileno(), 1) in (b"q", b"Q")


def run(connection: redis.Redis, *, once: bool = False) -> None:
    console = Console()
    if once or not console.is_terminal:
        console.print(render(snapshot.snapshot(connection)))
        return
    first = render(snapshot.snapshot(connection))
    with _keys(), contextlib.suppress(KeyboardInterrupt), \
            Live(first, console=console, auto_refresh=False) as live:  # fmt: skip
        while not _quit_pressed(REFRESH_SECONDS):
            live.update(render(snapshot.snapshot(connection)), refresh=True)
