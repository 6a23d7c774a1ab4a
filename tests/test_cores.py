"""Workers share their machine's cores: each chunk's x265 pool and segment check get the cores
divided among the UTE workers announced from the same host."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from pathlib import Path

import pytest
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


def test_a_worker_shares_its_cores_while_chunks_wait_for_the_workers_beside_it(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    connection = state.connect(clean_redis)
    monkeypatch.setattr(cores, "usable_cores", lambda: 12)
    monkeypatch.setattr(cores, "numa_nodes", lambda: 1)
    for name, host in [("me", socket.gethostname()), ("beside-1", socket.gethostname()),
                       ("beside-2", socket.gethostname()), ("elsewhere", "another-host")]:  # fmt: skip
        state.announce_worker(connection, name, {"name": name, "host": host})
    assert cores.threads_per_worker(connection) is None  # nothing queued: every core
    low = state.queue(state.QUEUE_LOW, connection)
    low.push_job_id("waiting-1")
    assert cores.threads_per_worker(connection) == 6
    for job_id in ("waiting-2", "waiting-3", "waiting-4"):
        state.queue(state.QUEUE_HIGH, connection).push_job_id(job_id)
    assert cores.threads_per_worker(connection) == 4  # three workers on this host, not four
    monkeypatch.setattr(cores, "numa_nodes", lambda: 2)
    assert cores.threads_per_worker(connection) is None  # x265 would read 4 as node 0's alone


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
    expected = [cores.share(usable, n) if cores.share(usable, n) < usable and cores.numa_nodes() == 1
                else None for n in (3, 2, 1)]  # fmt: skip
    assert [result["threads"] for result in results] == expected
    for result in results:
        if result["threads"] is not None:
            assert f"Thread pool created using {result['threads']} threads" in "\n".join(result["log"])
