"""Logging set-up: rich output in a terminal, plain lines elsewhere, optional log file."""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What makes rich treat a stream that is no terminal as one.
RICH_TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


@functools.cache
def console() -> Console:
    """The one console on stderr that logs and progress bars share, so that they do not tear
    each other."""
    from rich.console import Console

    return Console(stderr=True)


def on_terminal() -> bool:
    """Whether stderr is drawn on as a terminal. Where it is plainly a file or a pipe (a worker's
    log) rich is not even imported: 30 ms of every worker's start."""
    if not sys.stderr.isatty() and not any(name in os.environ for name in RICH_TERMINAL_ENV):
        return False
    return console().is_terminal


class OneLineFormatter(logging.Formatter):
    """One event, one line: control characters in a message (a file name with a newline or an
    escape sequence in it) are shown escaped, as Python writes them in a string. A traceback
    still follows on lines of its own."""

    def format(self, record: logging.LogRecord) -> str:
        message, arguments = record.msg, record.args
        record.msg, record.args = escape_control(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = message, arguments


def escape_control(text: str) -> str:
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def setup_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise SystemExit(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    handlers: list[logging.Handler] = []
    if on_terminal():
        from rich.logging import RichHandler

        rich = RichHandler(console=console(), show_path=False, markup=False)
        rich.setFormatter(OneLineFormatter("%(message)s"))
        handlers.append(rich)
    else:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(OneLineFormatter(PLAIN_FORMAT))
        handlers.append(plain)
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(OneLineFormatter(PLAIN_FORMAT))
        handlers.append(to_file)
    logging.basicConfig(level=numeric_level, handlers=handlers, force=True)
    # Libraries speak only when it matters: their debug output would drown ours.
    for noisy in ("rq", "redis", "watchdog"):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.INFO))
    # On shutdown the inotify thread logs an error about itself that means nothing to a user.
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
