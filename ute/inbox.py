"""The inbox: which files have arrived completely, and where sources go when they are finished.

A file is offered only when every signal agrees its transfer is over: its size and mtime have
not changed for the settle window, no local process holds it open for writing, and a probe finds
the whole file (its packets reach the duration its header declares). A probe that fails is not
a verdict while the file may still be arriving: the file is refused only after it has stayed
unchanged for the much longer stall window. Only what no more bytes can turn into a video is
refused as soon as it has settled: a file that is no media at all (FFmpeg cannot read it and it
does not start like any media format), a whole media file without a video stream, and a still
picture. Probes run in parallel threads, so one slow or stalled copy never holds up the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ute import state
from ute.config import SIDECAR_SUFFIX
from ute.encodable import still_picture
from ute.errors import NotMediaError, NoVideoError, ProbeError
from ute.names import beside, exists, fitted
from ute.probe import SourceInfo, probe

log = logging.getLogger(__name__)

HIGH_DIR, DONE_DIR, FAILED_DIR = "high", "done", "failed"
ERROR_SUFFIX = ".error.txt"  # `<name>.error.txt` beside a file in failed/ says why it failed
IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ERROR_SUFFIX, SIDECAR_SUFFIX)
# After a writer closes the file, this much quiet is enough (a close-write event is a strong sign).
CLOSED_SETTLE_SECONDS = 1.0
PROBE_THREADS = 4


@dataclass(frozen=True)
class InboxLayout:
    root: Path

    @property
    def high(self) -> Path:
        return self.root / HIGH_DIR

    @property
    def done(self) -> Path:
        return self.root / DONE_DIR

    @property
    def failed(self) -> Path:
        return self.root / FAILED_DIR

    def create(self) -> None:
        for folder in (self.root, self.high, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def queue_for(self, path: Path) -> str:
        return state.QUEUE_HIGH if path.parent == self.high else state.QUEUE_LOW

    def candidates(self) -> list[Path]:
        """Files waiting in the inbox and in high/, high/ first, each in name order."""
        found = []
        for folder in (self.high, self.root):
            with contextlib.suppress(FileNotFoundError):
                found += sorted(
                    entry for entry in folder.iterdir()
                    if entry.is_file() and not entry.name.startswith(".")
                    and not entry.name.endswith(IGNORED_SUFFIXES)
                )  # fmt: skip
        return found

    def move_to_done(self, source: Path) -> Path:
        """The source (and its `<name>.ute.toml`, if any) goes to done/."""
        return _move_with_sidecar(source, self.done)

    def move_to_failed(self, source: Path, reason: str, file_id: str = "") -> Path:
        """The source goes to failed/ with `<name>.error.txt` beside it saying why (and, for a file
        that was taken, how to retry it: `ute retry` finds the file by that line)."""
        moved = _move_with_sidecar(source, self.failed) if source.exists() else self.failed / source.name
        hint = f"\nOnce the cause is fixed, {retry_command(file_id)} encodes it again.\n" if file_id else ""
        beside(moved, ERROR_SUFFIX).write_text(reason.rstrip() + "\n" + hint, encoding="utf-8")
        return moved

    def failed_copy(self, name: str, file_id: str) -> Path | None:
        """Where move_to_failed put the file with this id (`name (2).mkv` after a clash), or
        `failed/<name>` if its reason names no id (moved there by an older UTE or by hand)."""
        for reason_file in sorted(self.failed.glob(f"*{ERROR_SUFFIX}")):
            if retry_command(file_id) in _text_of(reason_file):
                # a long name's reason file has a cut name: the file is the one it was made for
                return next((path for path in sorted(self.failed.iterdir())
                             if path != reason_file and beside(path, ERROR_SUFFIX) == reason_file), None)
        plain = self.failed / name
        names_another_file = retry_command("") in _text_of(beside(plain, ERROR_SUFFIX))
        return plain if plain.exists() and not names_another_file else None


def _text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def retry_command(file_id: str) -> str:
    """How a reason file names the retry command; retry_command("") is the start of any of them."""
    return f"`ute retry {file_id}`" if file_id else "`ute retry "


def _move_with_sidecar(source: Path, folder: Path) -> Path:
    moved = _move_aside(source, folder)
    sidecar = source.with_name(source.name + SIDECAR_SUFFIX)
    if exists(sidecar):  # a name with no room for `.ute.toml` has no sidecar
        shutil.move(sidecar, moved.with_name(moved.name + SIDECAR_SUFFIX))
    return moved


def _move_aside(source: Path, folder: Path) -> Path:
    """Move without ever replacing a file already there: `name (2).ext` if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    target = unused_name(folder / source.name)
    shutil.move(source, target)
    return target


def unused_name(path: Path, taken: Collection[Path] = ()) -> Path:
    """path, or `stem (2).suffix`, (3), …: the first that neither exists nor is taken (each cut
    to fit the filesystem's longest name)."""
    candidate, number = path.with_name(fitted(path.stem, path.suffix)), 1
    while candidate.exists() or candidate in taken:
        number += 1
        candidate = path.with_name(fitted(path.stem, f" ({number}){path.suffix}"))
    return candidate


@dataclass(frozen=True)
class Arrival:
    path: Path
    queue: str
    info: SourceInfo


@dataclass(frozen=True)
class Refusal:
    path: Path
    reason: str


@dataclass
class _Watched:
    size: int
    mtime_ns: int
    changed_at: float
    probe: Future[SourceInfo] | None = None
    error: str | None = None


@dataclass
class InboxWatcher:
    """Turns inbox events and rescans into Arrivals (complete files) and Refusals."""

    layout: InboxLayout
    settle_seconds: float
    stall_seconds: float
    rescan_seconds: float = 2.0
    _watched: dict[Path, _Watched] = field(default_factory=dict)
    _claimed: set[Path] = field(default_factory=set)
    _events: set[Path] = field(default_factory=set)
    _closed_at: dict[Path, float] = field(default_factory=dict)  # wall clock of close-write events
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_rescan: float = 0.0
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="ute-probe")
    )
    _observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        self.layout.create()
        handler = _EventRecorder(self)
        self._observer = Observer()
        for folder in (self.layout.root, self.layout.high):
            self._observer.schedule(handler, str(folder), recursive=False)
        self._observer.start()

    def stop(self) -> None:
        if self._observer:
            self._observer.stop()
            self._observer.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def release(self, path: Path) -> None:
        """The service is finished with path (moved, refused or dropped): watch it afresh."""
        self._claimed.discard(path)
        self._watched.pop(path, None)
        with self._lock:
            self._closed_at.pop(path, None)

    def note_event(self, path: Path, closed: bool) -> None:
        with self._lock:
            self._events.add(path)
            if closed:
                self._closed_at[path] = time.time()

    def _closed_since_last_write(self, path: Path, watched: _Watched) -> bool:
        with self._lock:
            closed_at = self._closed_at.get(path, 0.0)
        return closed_at >= watched.mtime_ns / 1e9 - 0.05

    def poll(self, now: float | None = None) -> list[Arrival | Refusal]:
        now = time.monotonic() if now is None else now
        with self._lock:
            had_events, self._events = bool(self._events), set()
        if had_events or now - self._last_rescan >= self.rescan_seconds:
            self._last_rescan = now
            present = set(self.layout.candidates())
            for gone in set(self._watched) - present:
                self._watched.pop(gone, None)
            for path in present - set(self._watched) - self._claimed:
                self._track(path, now)
        results: list[Arrival | Refusal] = []
        for path in sorted(self._watched, key=_arrival_order):
            if path not in self._claimed:
                outcome = self._check(path, self._watched[path], now)
                if outcome:
                    self._claimed.add(path)
                    results.append(outcome)
        return results

    def _track(self, path: Path, now: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            self._watched[path] = _Watched(stat.st_size, stat.st_mtime_ns, now)
            log.debug("%s: seen, waiting for its transfer to finish", path.name)

    def _check(self, path: Path, watched: _Watched, now: float) -> Arrival | Refusal | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._watched.pop(path, None)
            return None
        if (stat.st_size, stat.st_mtime_ns) != (watched.size, watched.mtime_ns):
            self._watched[path] = _Watched(stat.st_size, stat.st_mtime_ns, now)
            return None
        quiet = now - watched.changed_at
        if watched.probe is not None:
            if not watched.probe.done():
                return None
            return self._judge(path, watched, quiet)
        settled = quiet >= self.settle_seconds or (
            quiet >= min(CLOSED_SETTLE_SECONDS, self.settle_seconds)
            and self._closed_since_last_write(path, watched)
        )
        if watched.error is not None:
            if quiet >= self.stall_seconds:
                return Refusal(path, watched.error)
            return None
        if settled and not open_for_writing(path):
            watched.probe = self._pool.submit(probe, path)
        return None

    def _judge(self, path: Path, watched: _Watched, quiet: float) -> Arrival | Refusal | None:
        probe_result, watched.probe = watched.probe, None
        assert probe_result is not None
        try:
            info = probe_result.result()
        except (NotMediaError, NoVideoError) as error:  # no more bytes can make it a video
            return Refusal(path, str(error)) if _unchanged(path, watched) else None
        except ProbeError as error:
            watched.error = str(error)
            if quiet >= self.stall_seconds:
                return Refusal(path, watched.error)
            log.debug("%s: not complete yet (%s); still waiting", path.name, error)
            return None
        except Exception as error:  # a probe must never take the service down
            watched.error = f"{path}: could not be read ({error})"
            return None
        if (info.size, info.mtime_ns) != (watched.size, watched.mtime_ns):
            return None  # it changed while it was probed
        picture = still_picture(info)
        if picture:
            return Refusal(path, picture)
        return Arrival(path, self.layout.queue_for(path), info)


def _unchanged(path: Path, watched: _Watched) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (watched.size, watched.mtime_ns)


def _arrival_order(path: Path) -> tuple[int, str]:
    return (0 if path.parent.name == HIGH_DIR else 1, path.name)


class _EventRecorder(FileSystemEventHandler):
    def __init__(self, watcher: InboxWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        closed = event.event_type == "closed"
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self.watcher.note_event(Path(os.fsdecode(raw)), closed)


def open_for_writing(path: Path) -> bool:
    """Linux: whether any process we can see holds path open for writing (a copy in progress)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    try:
        target = path.resolve()
    except OSError:
        return False
    for fd_dir in proc.glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if Path(os.readlink(fd)) == target and _writable(fd_dir.parent, fd.name):
                        return True
    return False


def _writable(process_dir: Path, fd: str) -> bool:
    for line in (process_dir / "fdinfo" / fd).read_text().splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & (os.O_WRONLY | os.O_RDWR) != 0
    return False
