"""Two machines: `ute serve` in one network namespace, `ute-worker` in another, joined by a veth pair.
The worker runs as user nobody, who cannot read the coordinator's folders, so every byte of its
chunks goes over the network. Root only (here and in CI, where UTE_REQUIRE_NETNS=1 turns a skip
into a failure)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import spawn, wait_for
from media import frame_hashes, make_clip

from ute.plan import segment_name

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
WORKER_HOST = TESTS / "worker_host.py"
ATTACKS = TESTS / "transfer_attacks.py"
ENCODE = ("--x265-params", "lossless=1", "--preset", "ultrafast", "--chunk-frames", "24")
SLOW_LINK = ("tbf", "rate", "2mbit", "burst", "32kbit", "latency", "400ms")


@dataclass(frozen=True)
class Hosts:
    coordinator: str  # network namespace names
    worker: str
    coordinator_ip: str
    worker_link: str  # the worker's end of the veth pair

    @property
    def redis_url(self) -> str:
        return f"redis://{self.coordinator_ip}:6479/0"

    def on_coordinator(self, *argv: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.coordinator, *map(str, argv)]

    def on_worker(self, folder: Path, *argv: str | Path) -> list[str]:
        """argv on the worker's machine, as nobody, unable to read folder."""
        return ["ip", "netns", "exec", self.worker, "unshare", "--mount", "--propagation", "private",
                sys.executable, str(WORKER_HOST), str(folder), "--", *map(str, argv)]  # fmt: skip


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    problem = None
    if os.geteuid() != 0:
        problem = "network namespaces need root"
    elif not all(shutil.which(tool) for tool in ("ip", "unshare", "tc", "mount")):
        problem = "needs ip, tc, unshare and mount"
    if problem:
        if os.environ.get("UTE_REQUIRE_NETNS"):
            pytest.fail(problem)
        pytest.skip(problem)
    tag = f"{os.getpid() % 100000}{random.randrange(10)}"
    subnet = f"10.231.{random.randrange(1, 250)}"
    made = Hosts(f"ute-c{tag}", f"ute-w{tag}", f"{subnet}.1", f"utew{tag}")
    coordinator_link = f"utec{tag}"
    try:
        _ip("netns", "add", made.coordinator)
        _ip("netns", "add", made.worker)
        _ip("link", "add", coordinator_link, "type", "veth", "peer", "name", made.worker_link)
        for link, namespace, address in ((coordinator_link, made.coordinator, made.coordinator_ip),
                                         (made.worker_link, made.worker, f"{subnet}.2")):  # fmt: skip
            _ip("link", "set", link, "netns", namespace)
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", namespace, "link", "set", link, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for namespace in (made.coordinator, made.worker):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in family:
        member.kill()
    process.wait()


def test_a_worker_on_another_machine_encodes_through_the_network_alone(hosts: Hosts, tmp_path: Path) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    (inbox / "high").mkdir(parents=True)
    sources = {"a.mkv": make_clip(inbox / "a.mkv", seconds=4, gop=24, size="640x360", audio_tracks=1),
               "b.mkv": make_clip(inbox / "high" / "b.mp4", seconds=4, gop=24, size="640x360")}  # fmt: skip
    hashes = {name: frame_hashes(source) for name, source in sources.items()}
    serve_log = tmp_path / "serve.log"
    spawn(hosts.on_coordinator(sys.executable, "-m", "ute.cli", "serve", "--inbox", inbox, "--outbox",
                               outbox, "--plugins", tmp_path / "no-plugins", "--workers", "0", "--redis-bind",
                               hosts.coordinator_ip, "--settle-seconds", "0.5", *ENCODE),
          serve_log)  # fmt: skip
    wait_for(lambda: serve_log.read_text().count("queueing 4 chunks") == 2, "both files' chunks",
             log=serve_log)  # fmt: skip

    # What a worker could try: every request that is not its own file's, as it is meant, is refused.
    attacks = subprocess.run(hosts.on_worker(tmp_path, sys.executable, ATTACKS, hosts.redis_url,
                                             sources["a.mkv"]), capture_output=True, text=True, timeout=120)
    assert attacks.returncode == 0, attacks.stdout + attacks.stderr
    assert f"user 65534 cannot read {tmp_path}" in attacks.stdout
    said = json.loads(attacks.stdout.splitlines()[-1])
    assert said.pop("source readable here") is False
    assert said.pop("own file") == 206
    assert said.pop("an upload with another checksum") == 400
    assert said.pop("a commit of nothing") == 409
    assert said.pop("an upload for an attempt that is not the newest") == 409
    tokens = ("another file's token", "a token for another file", "no token")
    assert {said.pop(key) for key in tokens} == {403}
    assert set(said.values()) <= {400, 404}, said  # the paths

    # A worker killed while it sends a segment leaves nothing committed; its chunk is done again.
    subprocess.run(["ip", "netns", "exec", hosts.worker, "tc", "qdisc", "add", "dev", hosts.worker_link,
                    "root", *SLOW_LINK], check=True)  # fmt: skip
    first_log = tmp_path / "worker-1.log"
    first = spawn(hosts.on_worker(tmp_path, sys.executable, "-m", "ute.worker", "--redis-url",
                                  hosts.redis_url, "--name", "far-1"), first_log)  # fmt: skip
    work_root = outbox / ".ute-work"

    def arriving_segment() -> list[Path]:
        return [p for p in work_root.glob("*/*.arriving") if ".check" not in p.name]

    [arriving] = wait_for(arriving_segment, "a segment on its way", log=first_log, process=first)
    kill_tree(first)
    wait_for(lambda: not list(arriving.parent.glob("*.arriving")), "the cut upload to be dropped", timeout=60)
    index = int(arriving.name[:5])
    assert not (arriving.parent / segment_name(index)).exists()
    assert not list(arriving.parent.glob(f"{segment_name(index)}.*.part*"))
    subprocess.run(["ip", "netns", "exec", hosts.worker, "tc", "qdisc", "del", "dev", hosts.worker_link,
                    "root"], check=True)  # fmt: skip

    second_log = tmp_path / "worker-2.log"
    spawn(hosts.on_worker(tmp_path, sys.executable, "-m", "ute.worker", "--redis-url", hosts.redis_url,
                          "--name", "far-2"), second_log)  # fmt: skip
    outputs = [outbox / name for name in sources]
    wait_for(lambda: all(output.exists() for output in outputs), "both outputs", timeout=300, log=serve_log)
    for name, output in zip(sources, outputs, strict=True):
        assert frame_hashes(output) == hashes[name], name
    assert "lost its worker far-1; requeued at the front" in serve_log.read_text()
    worker_log = second_log.read_text()
    assert f"no shared folder here; over the network from http://{hosts.coordinator_ip}:" in worker_log
