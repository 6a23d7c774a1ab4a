"""Helpers for plugin authors. Optional: a plugin is any program that reads its environment.

    from ute import plugin_api
    source = plugin_api.source()
    plugin_api.set_overrides(crf=20)          # pre plugins only

The environment (the contract, see README: Plugins): UTE_STAGE (pre|post), UTE_JOB_ID (the file's
id, as `ute status` shows it), UTE_SOURCE, UTE_OUTPUT (post), UTE_OVERRIDES (pre: a JSON file of
settings to change).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def stage() -> str:
    return os.environ["UTE_STAGE"]


def file_id() -> str:
    """The file's id, as `ute status`, `ute history` and `ute logs` show it."""
    return os.environ["UTE_JOB_ID"]


job_id = file_id  # its older name, which plugins already written call


def source() -> Path:
    return Path(os.environ["UTE_SOURCE"])


def output() -> Path | None:
    value = os.environ.get("UTE_OUTPUT")
    return Path(value) if value else None


def overrides() -> dict[str, Any]:
    """The settings earlier pre plugins asked for."""
    path = os.environ.get("UTE_OVERRIDES")
    if not path:
        return {}
    text = Path(path).read_text(encoding="utf-8").strip()
    return json.loads(text) if text else {}


def set_overrides(**values: Any) -> None:
    """Merge settings (crf, preset, x265_params, chunk_frames, crop) into the overrides file."""
    path = os.environ.get("UTE_OVERRIDES")
    if not path:
        raise RuntimeError("UTE_OVERRIDES is not set: only pre plugins can change settings")
    merged = {**overrides(), **values}
    temporary = Path(path).with_suffix(".tmp")
    temporary.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def ffmpeg() -> str:
    """The ffmpeg UTE itself uses (with libx265)."""
    from ute import tools

    return tools.ffmpeg()
