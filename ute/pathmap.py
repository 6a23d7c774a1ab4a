"""Coordinator paths as a worker machine sees them.

Jobs carry the coordinator's absolute paths (the source and the work folder). A worker that
mounts the same share elsewhere says where: `ute-worker --path-map /srv/media=/mnt/media`, or
`UTE_PATH_MAP=/srv/media=/mnt/media` (several joined with ';'). The longest matching prefix wins,
and a prefix matches whole folder names only (`/srv/media` does not map `/srv/media2`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ute.errors import SettingsError

ENV_PATH_MAP = "UTE_PATH_MAP"
SEPARATOR = ";"


@dataclass(frozen=True)
class PathMapping:
    coordinator: str
    worker: str


def parse(entries: list[str]) -> list[PathMapping]:
    """`COORDINATOR=WORKER` entries, longest coordinator prefix first."""
    mappings = []
    for entry in entries:
        coordinator, equals, worker = entry.partition("=")
        if not equals or not coordinator.startswith("/") or not worker:
            raise SettingsError(f"path map {entry!r}: use COORDINATOR_PATH=WORKER_PATH, e.g. "
                                "/srv/media=/mnt/media")  # fmt: skip
        mappings.append(PathMapping(_without_trailing_slash(coordinator), _without_trailing_slash(worker)))
    return sorted(mappings, key=lambda m: len(m.coordinator), reverse=True)


def from_env() -> list[PathMapping]:
    text = os.environ.get(ENV_PATH_MAP, "")
    return parse([entry for entry in text.split(SEPARATOR) if entry.strip()])


def to_env(mappings: list[PathMapping]) -> str:
    return SEPARATOR.join(f"{m.coordinator}={m.worker}" for m in mappings)


def on_worker(path: str, mappings: list[PathMapping]) -> str:
    """The worker's name for a coordinator path (unchanged if no mapping covers it)."""
    for mapping in mappings:
        if path == mapping.coordinator:
            return mapping.worker
        inside = mapping.coordinator.rstrip("/") + "/"
        if path.startswith(inside):
            return mapping.worker.rstrip("/") + "/" + path[len(inside) :]
    return path


def _without_trailing_slash(path: str) -> str:
    return path.rstrip("/") or "/"
