"""The one place that starts subprocesses: argv lists only, timeouts, progress, stderr tails."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ute.errors import CommandError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
ERROR_LINES_IN_MESSAGE = 3
# rq ignores a second shutdown signal that comes within a second of the first.
RQ_SECOND_SIGNAL_GAP_SECONDS = 1.2
ProgressCallback = Callable[[dict[str, str]], None]


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr_tail: tuple[str, ...]
    seconds: float


# Loaded once here: dlopen() in a child forked from a threaded parent (the service, a work horse
# with its heartbeat thread) can deadlock on a lock another thread held at fork time.
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1

# Every process started here that may still run: what kill_everything() ends.
_started: set[subprocess.Popen[Any]] = set()
_started_lock = threading.Lock()


def _track(process: subprocess.Popen[Any]) -> None:
    with _started_lock:
        _started.difference_update([p for p in _started if p.poll() is not None])
        _started.add(process)


_BEARER = re.compile(r"(Bearer )[0-9a-f]{64}")


def _shown(argv: Sequence[str]) -> list[str]:
    """argv for the log, with a chunk server's token hidden."""
    return [_BEARER.sub(r"\1***", argument) for argument in argv]


def kill_everything() -> None:
    """SIGKILL every process group started here that is still there, with whatever its processes
    started in groups of their own (an rq work horse and its encoder): the second stop signal."""
    with _started_lock:
        running = [process for process in _started if process.poll() is None]
    for process in running:
        kill_descendants(process.pid)
        _signal_group(process, signal.SIGKILL)


def kill_descendants(pid: int) -> None:
    """SIGKILL every process below pid, in whatever process group it runs."""
    import psutil  # here: `ute status` imports this module, and needs no psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when its parent dies, so no encoder outlives its job."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Run argv to completion and return its stdout and the tail of its stderr.

    With on_progress, stdout is read as ffmpeg `-progress` blocks (key=value lines ending in
    `progress=...`) and each block is passed to the callback as it arrives.
    """
    argv = tuple(str(arg) for arg in argv)
    log.debug("run: %s", _shown(argv))
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # Its own process group, so a timeout kills whatever it started too (a plugin's
            # children); it still dies with us through the parent-death signal.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as error:
        raise CommandError(f"cannot start {argv[0]}: {error.strerror}") from error
    _track(process)

    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    stderr_thread = threading.Thread(
        target=lambda: stderr_tail.extend(line.rstrip("\n") for line in process.stderr),  # type: ignore[union-attr]
        daemon=True,
    )
    stderr_thread.start()
    timer = threading.Timer(timeout, _signal_group, (process, signal.SIGKILL)) if timeout else None
    if timer:
        timer.start()
    stdout_lines: list[str] = []
    block: dict[str, str] = {}
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            stdout_lines.append(line)
            if on_progress and "=" in line:
                key, _, value = line.strip().partition("=")
                block[key] = value
                if key == "progress":
                    on_progress(block)
                    block = {}
        returncode = process.wait()
    finally:
        if timer:
            timer.cancel()
        if process.poll() is None:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        stderr_thread.join(timeout=5)

    seconds = time.monotonic() - started
    result = CommandResult(argv, returncode, "".join(stdout_lines), tuple(stderr_tail), seconds)
    if timeout and seconds >= timeout and returncode < 0:
        raise CommandError(f"{Path(argv[0]).name} was stopped after {timeout:.0f} s without finishing")
    if check and returncode != 0:
        raise CommandError(describe_failure(result))
    return result


def describe_failure(result: CommandResult) -> str:
    """One line: which program failed, how, and what it said (its error lines, else its last)."""
    program = Path(result.argv[0]).name
    program = "ffmpeg" if program.startswith("ffmpeg") else program  # imageio-ffmpeg's long name
    how = f"was killed by signal {-result.returncode}" if result.returncode < 0 else (
        f"exited with status {result.returncode}"
    )
    lines = [line.strip() for line in result.stderr_tail if line.strip()]
    said = [line for line in lines if "error" in line.lower()][:ERROR_LINES_IN_MESSAGE] or lines[-1:]
    return f"{program} {how}" + (f": {' | '.join(said)}" if said else "")


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a long-running helper (a worker, a Redis server) in its own process group.

    die_with_parent: Linux kills it when the thread that started it ends, so start it from the
    main thread."""
    argv = tuple(str(arg) for arg in argv)
    log.debug("spawn: %s", _shown(argv))
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
        _track(process)
        return process
    except OSError as error:
        raise CommandError(f"cannot start {argv[0]}: {error.strerror}") from error
    finally:
        if log_path:
            output.close()  # type: ignore[union-attr]


def stop(
    processes: Sequence[subprocess.Popen[bytes]],
    *,
    grace_seconds: float = 10.0,
    cold: bool = False,
    wait: bool = True,
) -> None:
    """SIGTERM each helper's process group, then SIGKILL what is still there after the grace time.

    An rq worker takes one SIGTERM as "finish the job, then exit" and a second as "abort the
    job now" (cold): its work horse sits in a process group of its own, out of reach of ours.
    With wait=False the signal is only sent.
    """
    running = [process for process in processes if process.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    if cold and running:  # the second signal only to those the first did not end (idle ones exit)
        gap_ends = time.monotonic() + RQ_SECOND_SIGNAL_GAP_SECONDS
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, gap_ends - time.monotonic()))
        for process in running:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
    if not wait:
        return
    deadline = time.monotonic() + grace_seconds
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("process %d did not stop within %.0f s; killing it", process.pid, grace_seconds)
            kill_descendants(process.pid)  # a work horse runs in a group of its own
            _signal_group(process, signal.SIGKILL)
            process.wait()


def kill(processes: Sequence[subprocess.Popen[Any]]) -> None:
    """SIGKILL each process with everything it started (kill_descendants), and reap it."""
    for process in processes:
        kill_descendants(process.pid)
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
