"""File names UTE makes from users' names: cut to fit the filesystem, looked up without tripping
over a name that is too long. Pure but for `exists`."""

from __future__ import annotations

import errno
from pathlib import Path

# The longest file name most filesystems take (ext4, XFS, Btrfs, NTFS: 255 bytes or units).
NAME_MAX_BYTES = 255


def fitted(name: str, suffix: str, limit: int = NAME_MAX_BYTES) -> str:
    """name + suffix, with name cut (at a character) so that the whole fits in limit bytes."""
    room = limit - len(suffix.encode())
    return name.encode()[:room].decode(errors="ignore") + suffix


def beside(path: Path, suffix: str) -> Path:
    """`<name><suffix>` next to path (a sidecar, a reason file), cut to fit."""
    return path.with_name(fitted(path.name, suffix))


def exists(path: Path) -> bool:
    """Path.exists, but a name too long to exist does not."""
    try:
        return path.exists()
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return False
        raise
