"""`ute encode` starts its private Redis and local workers before it imports the rest of UTE, and
clears them away however the run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from media import make_clip
from rq import Worker

from ute import state

HEAVY = {"av", "rq", "redis", "watchdog", "rich", "numpy", "psutil", "pymediainfo", "cheroot", "werkzeug"}

START_AND_WAIT = """
import json, sys
from pathlib import Path
from ute import encode_start
swarm = encode_start.start(Path(sys.argv[1]), Path(sys.argv[2]), force=False, workers=2, redis_url=None)
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"url": swarm.url, "names": swarm.names, "pids": [p.pid for p in swarm.workers],
                  "folder": str(swarm.folder), "loaded": loaded}), flush=True)
sys.stdin.readline()
swarm.stop(cold=False)
swarm.clear_away(keep_logs=False)
"""


def test_redis_and_the_workers_start_with_no_heavy_module_loaded(tmp_path: Path) -> None:
    source, output = tmp_path / "movie.mp4", tmp_path / "out" / "movie.mkv"
    source.write_bytes(b"not read: only its name matters here")
    output.parent.mkdir()
    starter = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(source), str(output)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert starter.stdout is not None and starter.stdin is not None
        started = json.loads(starter.stdout.readline())
        assert HEAVY.isdisjoint(started["loaded"])
        connection = state.connect(started["url"])
        wanted = {Worker.redis_worker_namespace_prefix + name for name in started["names"]}
        wait_for(lambda: wanted <= set(Worker.all_keys(connection=connection)), "the workers to register")
        worker_pids = [worker.pid for worker in Worker.all(connection=connection)]
        forked = {child.pid for child in psutil.Process(started["pids"][0]).children()}
        assert forked == set(worker_pids) and len(forked) == 2, "one process forked both workers"
        starter.stdin.write("\n")
        starter.stdin.flush()
        assert starter.wait(timeout=60) == 0
    finally:
        starter.kill()
    assert not any(psutil.pid_exists(pid) for pid in [*started["pids"], *worker_pids])
    assert list(output.parent.iterdir()) == [], "its folder (logs, Redis data) and .ute-work are gone"


@pytest.mark.slow
def test_a_local_worker_that_dies_at_start_is_named_and_its_log_kept(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "movie.mkv", seconds=2)
    output = tmp_path / "out" / "movie.mkv"
    output.parent.mkdir()
    # Only a worker reads the path map: the coordinator plans, its worker refuses to start.
    result = subprocess.run([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                             "--workers", "1"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "UTE_PATH_MAP": "nonsense"})  # fmt: skip
    assert result.returncode == 1
    head, _, logs_folder = result.stderr.splitlines()[-1].partition(" see its log in ")
    assert head == "ute: error: a local worker exited at start;"
    logs = Path(logs_folder)
    work = output.parent / ".ute-work"
    assert logs.parent.parent == work, "in the file's work folder, beside its segments"
    assert [path.name for path in work.iterdir()] == [logs.parent.name], "nothing else left in .ute-work"
    assert "ute-worker: error: path map 'nonsense'" in next(logs.glob("local-*-1.log")).read_text()
    assert not (logs / "redis").exists(), "the Redis data goes: a rerun starts from the segments"
    assert not output.exists()


# `ute encode` as run, until it imports ute.encode: there it counts its children and fails.
COUNT_CHILDREN_AT_THE_HEAVY_IMPORT = """
import sys, threading
from ute import cli

class CountChildren:
    def find_spec(self, name, path=None, target=None):
        if name == "ute.encode":
            children = open(f"/proc/self/task/{threading.get_native_id()}/children").read().split()
            print(f"children when ute.encode is imported: {len(children)}", flush=True)
            raise ImportError("stopped here by the test")
        return None

sys.meta_path.insert(0, CountChildren())
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ute_encode_starts_redis_and_workers_before_its_heavy_imports_and_clears_them_if_one_fails(
    tmp_path: Path,
) -> None:  # fmt: skip
    source = tmp_path / "movie.mkv"
    source.write_bytes(b"not read: the run stops before the probe")
    output = tmp_path / "out" / "movie.mkv"
    output.parent.mkdir()
    result = subprocess.run([sys.executable, "-c", COUNT_CHILDREN_AT_THE_HEAVY_IMPORT, "encode", str(source),
                             "-o", str(output), "--workers", "2"], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    # Redis, and the process that forks the 2 workers
    assert "children when ute.encode is imported: 2" in result.stdout, result.stderr
    assert result.returncode != 0 and "stopped here by the test" in result.stderr
    assert list(output.parent.iterdir()) == []
