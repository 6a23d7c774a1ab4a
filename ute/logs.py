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


def setup_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise SystemExit(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    handlers: list[logging.Handler] = []
    if console.is_terminal:
        handlers.append(RichHandler(console=console, show_path=False))
    else:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter(PLAIN_FORMAT))
        handlers.append(plain)
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(PLAIN_FORMAT))
        handlers.append(to_file)
    logging.basicConfig(level=numeric_level, handlers=handlers, force=True)
    # Libraries speak only when it matters: their debug output would drown ours.
    for noisy in ("rq", "redis", "watchdog"):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.INFO))
    # On shutdown the inotify thread logs an error about itself that means nothing to a user.
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
