"""The first and second stop signal (Ctrl-C, SIGTERM), the same for `ute encode` and `ute serve`.

The first sets `stop`: the command takes nothing new, its local workers finish their running
chunks, a file being muxed, verified or post-processed is finished, then it exits; a restart
resumes. The second sets `abort`: the command puts its running chunks back, and at most
ABORT_SECONDS later every process UTE started is killed (encoders, plugins, workers) and it exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import NoReturn

from ute import runner

log = logging.getLogger(__name__)

ABORT_SECONDS = 1.5
EXIT_INTERRUPTED = 130


class StopSignals:
    def __init__(self, command: str, coasting: str) -> None:
        self.command = command
        self.coasting = coasting  # what the first signal does, for the log
        self.stop = threading.Event()
        self.abort = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.abort.is_set():
            return
        if self.stop.is_set():
            log.info("%s again: aborting now; start %s again to resume", name, self.command)
            self.abort.set()
            deadline = threading.Timer(ABORT_SECONDS, exit_now)
            deadline.daemon = True
            deadline.start()
            return
        log.info("%s: %s; start %s again to resume (%s again to abort)", name, self.coasting, self.command,
                 name)  # fmt: skip
        self.stop.set()


def exit_now(status: int = EXIT_INTERRUPTED) -> NoReturn:
    """Kill every process UTE started and leave, without waiting for helper threads (a verify or
    a post plugin in the middle of its work)."""
    runner.kill_everything()
    logging.shutdown()
    os._exit(status)


def leave_now(status: int) -> NoReturn:
    """Exit with the logs and standard streams flushed and without the interpreter's teardown;
    the normal exit where a thread that it would wait for is still running."""
    if any(thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
           for thread in threading.enumerate()):  # fmt: skip
        sys.exit(status)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(status)
