"""Run a command as another machine's worker would: as user nobody, in a mount namespace of its own
where this Python and UTE are readable (a worker machine has them installed) and nothing else of
the coordinator's is. Run as root inside the worker's network namespace:

    ip netns exec NS unshare --mount --propagation private python worker_host.py FOLDER -- ARGV...

It refuses to run ARGV (exit 3) when nobody can read FOLDER (the coordinator's folders): the test
is only worth anything if the worker cannot.
"""

from __future__ import annotations

import os
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import ute

NOBODY = 65534


def main() -> int:
    separator = sys.argv.index("--")
    coordinator_folder, argv = Path(sys.argv[1]), sys.argv[separator + 1 :]
    places = (sys.prefix, sys.base_prefix, sys.executable, sysconfig.get_paths()["purelib"],
              *site.getsitepackages())  # fmt: skip
    needed = {Path(place).resolve() for place in places}
    needed.add(Path(ute.__file__).resolve().parent.parent)  # an editable install's checkout
    needed.add(Path(__file__).resolve().parent)  # the tests' own helper scripts
    for _ in range(8):
        blocked = _first_blocked(needed)
        if blocked is None:
            break
        _open_up(*blocked)
    home = Path(tempfile.mkdtemp(prefix="ute-worker-home-"))
    os.chown(home, NOBODY, NOBODY)
    os.environ.update(HOME=str(home), TMPDIR=str(home), USER="nobody")
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    if os.access(coordinator_folder, os.R_OK) or os.access(coordinator_folder, os.X_OK):
        print(f"worker host: {coordinator_folder} is readable by this worker", flush=True)
        return 3
    print(f"worker host: user {os.getuid()} cannot read {coordinator_folder}", flush=True)
    os.execvp(argv[0], argv)


def _first_blocked(needed: set[Path]) -> tuple[Path, set[str]] | None:
    """The first folder on the way to a needed path that others may not pass through, and the
    names in it that lead to needed paths."""
    for path in sorted(needed):
        for folder in [*reversed(path.parents)]:
            if not folder.stat().st_mode & stat.S_IXOTH:
                names = {p.relative_to(folder).parts[0] for p in needed if folder in p.parents}
                return folder, names
    return None


def _open_up(folder: Path, names: set[str]) -> None:
    """An empty folder that everyone may pass through in place of folder, with only names in it."""
    stash = Path(tempfile.mkdtemp(prefix="ute-stash-"))
    for name in names:
        (stash / name).mkdir()
        _mount("--bind", str(folder / name), str(stash / name))
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(folder))
    for name in names:
        (folder / name).mkdir()
        _mount("--move", str(stash / name), str(folder / name))


def _mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True)


if __name__ == "__main__":
    sys.exit(main())
