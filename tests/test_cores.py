"""Workers share their machine's cores: each chunk's x265 pool and segment check get the cores
divided among the UTE workers announced from the same host."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from pathlib import Path

from conftest import start_worker
from hypothesis import given
from hypothesis import strategies as st
from media import make_clip
from rq.job import Job
from rq.serializers import JSONSerializer

from ute import cores, state, submit
from ute.jobs import ChunkSpec, FileSpec
from ute.probe import probe
from ute.settings import EncodeSettings


@given(st.integers(1, 512), st.integers(0, 64))
def test_every_core_is_given_out_and_no_worker_gets_more_than_one_thread_too_many(cores_here: int,
                                                                                  workers: int) -> None:
    threads = cores.share(cores_here, workers)
    assert threads >= 1
    assert threads * max(1, workers) >= cores_here
    assert (threads - 1) * max(1, workers) < cores_here or threads == 1


def test_workers_are_counted_by_the_host_they_announce(clean_redis: str) -> None:
    connection = state.connect(clean_redis)
    for name, host in [("a", "box"), ("b", "box"), ("c", "other")]:
        state.announce_worker(connection, name, {"name": name, "host": host})
    assert state.workers_on_host(connection, "box") == 2
    assert state.workers_on_host(connection, "nowhere") == 0


def test_a_chunk_shares_the_cores_while_chunks_wait_for_the_workers_beside_it(clean_redis: str, tmp_path: Path
                                                                              ) -> None:  # fmt: skip
    """Two more workers announced from this host, three chunks queued: the real worker's first chunk
    gets a third of the cores (two wait), its second half (one waits), its last all of them."""
    connection = state.connect(clean_redis)
    settings = EncodeSettings(preset="ultrafast").to_json()
    source = make_clip(tmp_path / "clip.mkv", seconds=1, gop=24)
    file_id = state.fingerprint(str(source), 1, 1)
    work_id = state.work_id(file_id, json.dumps(settings))
    work = tmp_path / ".ute-work" / work_id
    work.mkdir(parents=True)
    file = FileSpec(str(source), probe(source).video_index, str(work), settings)
    chunks = [ChunkSpec(work_id, index, 0, 24, 0) for index in range(3)]
    job_ids = submit.submit_chunks(connection, file, chunks, state.QUEUE_LOW)
    worker = start_worker(clean_redis, tmp_path / "worker.log", "--burst")
    while worker.poll() is None:  # announced as live workers do, until the chunks are done
        for name in ("beside-1", "beside-2"):
            state.announce_worker(connection, name, {"name": name, "host": socket.gethostname()})
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=0.5)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
    results = [Job.fetch(job_id, connection=connection, serializer=JSONSerializer).return_value()
               for job_id in job_ids]  # fmt: skip
    usable = cores.usable_cores()
    assert [result["threads"] for result in results] == [cores.share(usable, n) for n in (3, 2, 1)]
    for result in results:
        assert f"Thread pool created using {result['threads']} threads" in "\n".join(result["log"])
