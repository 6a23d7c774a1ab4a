"""The light first half of `ute encode`: check its paths, then start what runs beside the
coordinator (its private Redis, its local workers) before the coordinator imports the rest of UTE
(about 0.4 s of a core), so that the workers import theirs meanwhile. The standard library and
light UTE modules only: a test holds this module to that."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ute import runner
from ute.defaults import ENV_PARENT_PID, ENV_REDIS_URL, WORK_DIR_NAME
from ute.errors import UteError
from ute.redis_server import PrivateRedis, free_port

LOCAL_WORKER_GRACE_SECONDS = 30


def check_paths(source: Path, output: Path, *, force: bool) -> None:
    try:
        source.stat()
    except OSError as error:  # as the probe says it, but before anything is started
        raise UteError(f"{source}: cannot read it ({error.strerror})") from None
    if output.suffix.lower() != ".mkv":
        raise UteError(f"{output}: UTE writes Matroska; give the output a .mkv name")
    if output.exists() and output.resolve() == source.resolve():
        raise UteError(f"{output}: the output would overwrite the source; choose another name")
    if output.exists() and not force:
        raise UteError(f"{output}: already exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise UteError(f"{output.parent}: no such folder for the output")


def spawn_local_workers(url: str, names: Sequence[str], log_dir: Path) -> subprocess.Popen[bytes]:
    """One `ute-worker` process for the names: with several, it loads UTE once and forks a worker
    per name, each writing to log_dir/NAME.log (its own output before that goes to the first's)."""
    named = [argument for name in names for argument in ("--name", name)]
    return runner.spawn(
        [sys.executable, "-m", "ute.worker", *named, "--log-folder", log_dir],
        log_path=log_dir / f"{names[0]}.log",
        # The URL not in argv, where `ps` shows a password; our pid, so that it exits when we die.
        env={**os.environ, ENV_REDIS_URL: url, ENV_PARENT_PID: str(os.getpid())},
    )


def local_worker_names(count: int) -> list[str]:
    return [f"local-{os.getpid()}-{number}" for number in range(1, count + 1)]


@dataclass
class LocalSwarm:
    """What one `ute encode` runs beside itself: a private Redis unless it was given a URL, and
    its local workers. Their logs and the Redis data are in folder until the run ends."""

    url: str
    folder: Path
    names: list[str]
    workers: list[subprocess.Popen[bytes]]  # the one process that forks the named workers
    private_redis: PrivateRedis | None
    work_dir: Path | None = None  # the file's work folder, once planned
    started_at: float = field(default_factory=time.monotonic)

    def stop(self, *, cold: bool) -> None:
        """Stop the workers (cold: their running chunks too), then the private Redis."""
        try:
            runner.stop(self.workers, grace_seconds=LOCAL_WORKER_GRACE_SECONDS, cold=cold)
        finally:
            if self.private_redis is not None:
                self.private_redis.stop()

    def clear_away(self, *, keep_logs: bool) -> None:
        """After stop(): the folder goes; its logs go to work_dir first if keep_logs and the run got
        that far (the file's folder, which a failed run leaves). The Redis data goes either way:
        a rerun goes on from the segments, not from old queue state."""
        if self.private_redis is not None:
            shutil.rmtree(self.private_redis.data_dir, ignore_errors=True)
        if keep_logs and self.work_dir is not None and self.work_dir.is_dir() and any(self.folder.iterdir()):
            shutil.rmtree(self.logs_folder, ignore_errors=True)
            shutil.move(self.folder, self.logs_folder)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # WORK_DIR_NAME, if it holds nothing else
            self.folder.parent.rmdir()

    @property
    def logs_folder(self) -> Path:
        """Where a failed run's worker logs end up (clear_away)."""
        return self.folder if self.work_dir is None else self.work_dir / self.folder.name


def start(source: Path, output: Path, *, force: bool, workers: int, redis_url: str | None) -> LocalSwarm:
    """check_paths, then start the private Redis (when redis_url is None) and the local workers."""
    check_paths(source, output, force=force)
    # Named after the command, not the process: the next run of the same command clears what an
    # aborted one left. (Two runs of one command at once would share the file's work folder too.)
    command = hashlib.sha256(f"{source.absolute()}\n{output.absolute()}".encode()).hexdigest()[:16]
    folder = output.parent / WORK_DIR_NAME / f"local-{command}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    swarm = LocalSwarm(redis_url or "", folder, local_worker_names(workers), [], None)
    try:
        if redis_url is None:
            swarm.private_redis = PrivateRedis(folder / "redis", "127.0.0.1", free_port())
            swarm.private_redis.data_dir.mkdir()
            swarm.private_redis.start()
            swarm.url = swarm.private_redis.url
        if swarm.names:
            swarm.workers.append(spawn_local_workers(swarm.url, swarm.names, folder))
    except BaseException:
        swarm.stop(cold=True)  # the folder stays: a server that failed to start left its log there
        raise
    return swarm
