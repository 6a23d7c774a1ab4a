"""Logging set-up: rich output in a terminal, plain lines elsewhere, optional log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Logs and progress bars share one console on stderr so bars and lines do not tear each other.
console = Console(stderr=True)


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
    if console.is_terminal:
        rich = RichHandler(console=console, show_path=False, markup=False)
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
