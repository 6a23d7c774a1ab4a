"""Encode settings with their defaults, validation, and environment overrides."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from ute.defaults import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    ENV_REDIS_URL,
    REDIS_URL_FORMS,
    REDIS_URL_SCHEMES,
    X265_PRESETS,
)
from ute.errors import SettingsError
from ute.x265_params import check as check_x265_params

DEFAULT_CHUNK_SECONDS = 10.0
# A shorter file is cut into about this many chunks, so that as many workers share it, but with
# a target no shorter than MIN_CHUNK_SECONDS (cuts fall on keyframes: a chunk may be half its
# target): shorter chunks cost size (+1.4% at 5 s, +1.6% at 4 s and +3.0% at 3 s against 10 s,
# on a 30 s zoom at `fast`).
SHORT_FILE_CHUNKS = 4
MIN_CHUNK_SECONDS = 5.0
# rq kills a job after this many seconds; generous because a slow preset on a long chunk is slow.
DEFAULT_CHUNK_TIMEOUT_SECONDS = 6 * 3600
# A failed chunk is tried again after each of these waits (growing, so that a passing problem can
# pass); once they are used up, its file fails.
CHUNK_RETRY_DELAYS_SECONDS = (5.0, 30.0, 120.0)
ENV_RETRY_DELAYS = "UTE_RETRY_DELAYS"  # e.g. "5,30,120"
ENV_STUCK_SECONDS = "UTE_STUCK_SECONDS"
# Chunk results (with their encoder logs) stay in Redis this long; finished files also keep
# them in the history.
DEFAULT_LOG_TTL_SECONDS = 7 * 24 * 3600
ENV_LOG_TTL = "UTE_LOG_TTL"

# Below this much free space on a disk UTE writes to, the farm pauses and `ute serve` won't start.
DEFAULT_MIN_FREE_MB = 1024
ENV_MIN_FREE_MB = "UTE_MIN_FREE_MB"

ENV_FFMPEG = "UTE_FFMPEG"

_CROP = re.compile(r"^(?P<w>\d+):(?P<h>\d+):(?P<x>\d+):(?P<y>\d+)$")


@dataclass(frozen=True)
class EncodeSettings:
    """How each chunk is encoded; JSON-safe so it can travel inside an rq job."""

    crf: float = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    x265_params: str = ""
    # None: about DEFAULT_CHUNK_SECONDS of video, decided per file from its frame rate.
    chunk_frames: int | None = None
    crop: str | None = None  # "w:h:x:y", as ffmpeg's crop filter takes it


    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise SettingsError(f"crf {self.crf} is out of range: use a value from 0 to 51")
        if self.preset not in X265_PRESETS:
            raise SettingsError(
                f"unknown x265 preset {self.preset!r}: use one of {', '.join(X265_PRESETS)}"
            )
        # Every source of settings comes through here: no file-touching or unknown x265 parameter.
        check_x265_params(self.x265_params)
        if self.chunk_frames is not None and self.chunk_frames < 1:
            raise SettingsError(f"chunk frames {self.chunk_frames} must be a positive number")
        if self.crop is not None:
            match = _CROP.match(self.crop)
            if not match or int(match["w"]) < 2 or int(match["h"]) < 2:
                raise SettingsError(f"crop {self.crop!r} is not of the form width:height:x:y")
            if int(match["w"]) % 2 or int(match["h"]) % 2:
                raise SettingsError(f"crop {self.crop!r}: width and height must be even for x265")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EncodeSettings:
        return cls(**data)


def chunk_retry_delays() -> tuple[float, ...]:
    """The waits before each retry of a failed chunk; $UTE_RETRY_DELAYS overrides them."""
    override = os.environ.get(ENV_RETRY_DELAYS)
    if not override:
        return CHUNK_RETRY_DELAYS_SECONDS
    try:
        return tuple(float(part) for part in override.split(",") if part.strip())
    except ValueError as error:
        raise SettingsError(f"{ENV_RETRY_DELAYS}={override!r}: use seconds separated by commas") from error


def stuck_seconds_override() -> float | None:
    """$UTE_STUCK_SECONDS: how long a chunk may go without a new frame, whatever the speed."""
    override = os.environ.get(ENV_STUCK_SECONDS)
    try:
        return float(override) if override else None
    except ValueError as error:
        raise SettingsError(f"{ENV_STUCK_SECONDS}={override!r}: use a number of seconds") from error


def log_ttl_seconds() -> int:
    """How long chunk logs stay in Redis; $UTE_LOG_TTL (seconds) overrides the week."""
    override = os.environ.get(ENV_LOG_TTL)
    try:
        return int(override) if override else DEFAULT_LOG_TTL_SECONDS
    except ValueError as error:
        raise SettingsError(f"{ENV_LOG_TTL}={override!r}: use a whole number of seconds") from error


def min_free_bytes() -> int:
    """How much free space UTE wants on each disk it writes to; $UTE_MIN_FREE_MB overrides it."""
    override = os.environ.get(ENV_MIN_FREE_MB)
    try:
        megabytes = float(override) if override else DEFAULT_MIN_FREE_MB
    except ValueError as error:
        raise SettingsError(f"{ENV_MIN_FREE_MB}={override!r}: use a number of megabytes") from error
    return int(megabytes * 2**20)


def check_redis_url(url: str) -> None:
    """Refuse a URL redis-py cannot use, in one line that shows the forms it can (never the password)."""
    if urlsplit(url).scheme.lower() not in REDIS_URL_SCHEMES:
        from ute.state import redacted

        given_as = f"${ENV_REDIS_URL}" if url == os.environ.get(ENV_REDIS_URL) else "--redis-url"
        raise SettingsError(f"{given_as} {redacted(url)}: use {REDIS_URL_FORMS}")
