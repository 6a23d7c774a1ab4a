"""UTE's defaults and environment variable names, in one leaf module: stdlib only, no side effects.

The command-line parsers take their defaults and help texts from here, so that `ute --help`
loads none of the modules that do the work.
"""

from __future__ import annotations

import os

# A fixed port, so that remote workers find the private Redis of `ute serve` again after a restart.
DEFAULT_REDIS_PORT = 6479
DEFAULT_REDIS_BIND = "127.0.0.1"
# Where `ute-worker`, `ute status` and the other clients look for Redis when not told: `ute serve`'s.
DEFAULT_REDIS_URL = f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0"
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")
REDIS_URL_FORMS = "redis://HOST:PORT/DB, rediss://… or unix:///path/to/socket"

DEFAULT_LOCAL_WORKERS = 2
DEFAULT_DASHBOARD_PORT = 9181
# The coordinator's chunk server, for workers without the shared folder (a free port if taken).
DEFAULT_CHUNK_SERVER_PORT = 9183

DEFAULT_CONFIG_NAME = "ute.toml"
# Work in progress, beside the output (`ute encode`) or in the outbox (`ute serve`).
WORK_DIR_NAME = ".ute-work"
DEFAULT_CRF = 28.0
DEFAULT_PRESET = "medium"
X265_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip

DEFAULT_SETTLE_SECONDS = 5.0
DEFAULT_STALL_SECONDS = 120.0
DONE_ACTIONS = ("move", "delete", "keep")
DEFAULT_PLUGIN_TIMEOUT_SECONDS = 600.0

ENV_REDIS_URL = "UTE_REDIS_URL"
# Hosts besides its Redis host that a worker reads chunks from (`ute-worker --allow-chunk-server`).
ENV_CHUNK_SERVERS = "UTE_CHUNK_SERVERS"
# Set by a coordinator for the local workers it starts: they exit when that process is gone.
ENV_PARENT_PID = "UTE_PARENT_PID"


def redis_url_from_env() -> str | None:
    """$UTE_REDIS_URL, or None: then `ute encode` and `ute serve` start a private Redis, and the others
    use DEFAULT_REDIS_URL."""
    return os.environ.get(ENV_REDIS_URL) or None

# How an output is verified: from its segments' packets and the workers' checks, or by decoding
# the whole output on the coordinator (what every run did before; it grows with decode time).
VERIFY_SEGMENTS = "segments"
VERIFY_FULL = "full"
VERIFY_MODES = (VERIFY_SEGMENTS, VERIFY_FULL)
