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

HEAVY = {"av", "rq", "redis", "watchdog", "rich", "numpy", "psutil", "pymediainfo"}

START_AND_WAIT = """
import json, sys
from pathlib import Path
from ute import encode_start
swarm = encode_start.start(Path(sys.argv[1]), Path(sys.argv[2]), force=False, workers=1, redis_url=None)
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"url": swarm.url, "names": swarm.names, "pids": [p.pid for p in swarm.workers],
                  "folder": str(swarm.folder), "loaded": loaded}), flush=True)
sys.stdin.readline()
swarm.stop(cold=False)
swarm.clear_away(keep_logs=False)
"""


def test_redis_and_the_workers_start_with_no_heavy_module_loaded(tmp_path: Path) -> None:
    output = tmp_path / "out" / "movie.mkv"
    output.parent.mkdir()
    starter = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(tmp_path / "movie.mp4"), str(output)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert starter.stdout is not None and starter.stdin is not None
        started = json.loads(starter.stdout.readline())
        assert HEAVY.isdisjoint(started["loaded"])
        connection = state.connect(started["url"])
        wanted = Worker.redis_worker_namespace_prefix + started["names"][0]
        wait_for(lambda: wanted in Worker.all_keys(connection=connection), "the worker to register")
        starter.stdin.write("\n")
        starter.stdin.flush()
        assert starter.wait(timeout=60) == 0
    finally:
        starter.kill()
    assert not any(psutil.pid_exists(pid) for pid in started["pids"])
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
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith("ute: error: a local worker exited at start; see its log in ")
    logs = Path(last_line.rsplit(" ", 1)[1])
    work = output.parent / ".ute-work"
    assert logs.parent.parent == work, "in the file's work folder, beside its segments"
    assert [path.name for path in work.iterdir()] == [logs.parent.name], "nothing else left in .ute-work"
    assert "ute-worker: error: path map 'nonsense'" in next(logs.glob("local-*-1.log")).read_text()
    assert not (logs / "redis").exists(), "the Redis data goes: a rerun starts from the segments"
    assert not output.exists()
