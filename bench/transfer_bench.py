"""Chunks over the network against a shared folder: what a worker that sees none of the coordinator's
folders costs, in bytes moved and in time, on loopback, the same clip with one worker each way.

    python bench/transfer_bench.py [--seconds 60] [--size 1280x720] [--container mp4] [--preset ultrafast]
                                   [--chunk-frames N] [--runs 1]

One Redis for the whole bench; each run is `ute encode --workers 0` with its chunk server on
127.0.0.1 and one burst `ute.worker`: on the shared folder (the baseline), or sent to the network
by a path map that puts the coordinator's folder nowhere. With --runs > 1 the two alternate and the
figures are medians over every chunk (or run) of each kind.

Bytes are the coordinator's own count (state.chunks_moved): the source it sent for a chunk against
the chunk's share of the source (its size x the chunk's frames / all frames), and what it received
(segment + check) against the segment's size. The source is read while the chunk encodes, so the
network's cost in time is the difference in chunk seconds; the upload is in commit_seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rq.job import Job
from rq.serializers import JSONSerializer

from ute import runner, state, tools, transfer
from ute.redis_server import private_redis

QUEUED = "chunks that have no job in Redis"
KINDS = ("shared", "network")
RUN_TIMEOUT_SECONDS = 3600.0
MAX_CHUNK_ROWS = 12


@dataclass(frozen=True)
class Run:
    kind: str
    wall: float  # the coordinator's start to its exit
    results: list[dict[str, Any]]  # each chunk job's return value, by index
    moved: dict[int, dict[str, int]]  # state.chunks_moved
    worker: dict[str, Any]  # state.workers_moved for the one worker


def make_source(folder: Path, seconds: int, size: str, container: str) -> Path:
    """H.264 with a keyframe every 2 s and one AAC track; an MP4's moov goes at the end (no faststart)."""
    source = folder / f"source.{container}"
    runner.run([tools.ffmpeg(), "-nostdin", "-v", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc2=s={size}:r=24:d={seconds}",
                "-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-map", "0:v", "-map", "1:a",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "48", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "128k", f"file:{source}"])  # fmt: skip
    return source


def ute(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "ute.cli", *args], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path,
             timeout: float) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise SystemExit(f"no {what} (exit status {process.poll()}); {log.name}:\n{tail}")
        time.sleep(0.05)


def one_run(kind: str, source: Path, folder: Path, url: str, encode_options: Sequence[str],
            chunk_count: int) -> Run:  # fmt: skip
    """One `ute encode` of source into folder, with one worker on the shared folder or the network."""
    connection = state.connect(url)
    connection.flushdb()
    folder.mkdir()
    output, encode_log, worker_log = folder / "out.mkv", folder / "encode.log", folder / "worker.log"
    name = f"bench-{kind}-{folder.name}"
    # The coordinator's folders (the source's and the output's) are all under source.parent.
    path_map = ["--path-map", f"{source.parent}=/nowhere{source.parent}"] if kind == "network" else []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        coordinator = runner.spawn([sys.executable, "-m", "ute.cli", "encode", str(source), "-o", str(output),
                                    "--workers", "0", "--redis-url", url, "--chunk-server-host", "127.0.0.1",
                                    "--chunk-server-port", "0", *encode_options],
                                   log_path=encode_log, die_with_parent=True)  # fmt: skip
        processes.append(coordinator)
        wait_for(lambda: QUEUED in encode_log.read_text(errors="replace"), "chunks queued", coordinator,
                 encode_log, timeout=600)  # fmt: skip
        worker = runner.spawn([sys.executable, "-m", "ute.worker", "--redis-url", url, "--burst",
                               "--name", name, *path_map],
                              log_path=worker_log, die_with_parent=True)  # fmt: skip
        processes.append(worker)
        try:
            status = coordinator.wait(timeout=RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            status = None
        wall = time.perf_counter() - started
        if status != 0:
            tail = encode_log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{kind} run: ute encode exited with {status}; encode.log:\n{tail}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=60)  # a burst worker exits once the queues are empty; else stopped below
    finally:
        runner.stop(processes[::-1], grace_seconds=10)
    [file] = json.loads(ute("status", "--json", "--redis-url", url))["jobs"]
    work_id = str(file["work_id"])
    ids = state.current_chunk_job_ids(connection, work_id, range(chunk_count))
    jobs = Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)
    results = []
    for job_id, job in zip(ids, jobs, strict=True):
        value = job.return_value() if job is not None else None
        if not isinstance(value, dict):
            raise SystemExit(f"{kind} run: chunk job {job_id} has no result")
        results.append(value)
    results.sort(key=lambda result: int(result["index"]))
    way = transfer.INPUT_NETWORK if kind == "network" else transfer.INPUT_SHARED_FOLDER
    if wrong := {result["input"] for result in results} - {way}:
        raise SystemExit(f"{kind} run: chunks were encoded through {wrong}, not the {way}")
    moved = state.chunks_moved(connection, work_id)
    worker_moved = state.workers_moved(connection, [name])[name]
    connection.close()
    return Run(kind, wall, results, moved, worker_moved)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def mib(count: float) -> str:
    return f"{count / (1 << 20):8.2f} MiB"


def print_bytes(runs: list[Run], source_bytes: int, total_frames: int) -> None:
    rows = []  # (run, index, frames, share, sent, received, segment) per chunk of every network run
    for number, run in enumerate(runs):
        for result in run.results:
            index = int(result["index"])
            moved = run.moved.get(index, {"sent": 0, "received": 0})
            share = source_bytes * int(result["frames"]) / total_frames
            rows.append((number, index, int(result["frames"]), share, moved["sent"], moved["received"],
                         int(result["bytes"])))  # fmt: skip
    print("\nbytes per chunk, network run(s) (share: source size x chunk frames / all frames; "
          "received: segment + check)")  # fmt: skip
    if len(rows) <= MAX_CHUNK_ROWS:
        print(f"{'run':>3} {'chunk':>5} {'frames':>6} {'share':>12} {'sent':>12} {'sent/share':>10} "
              f"{'received':>12} {'segment':>12} {'recv-seg':>9}")  # fmt: skip
        for number, index, frames, share, sent, received, segment in rows:
            print(f"{number:3d} {index:5d} {frames:6d} {mib(share)} {mib(sent)} {sent / share:10.3f} "
                  f"{mib(received)} {mib(segment)} {received - segment:7d} B")  # fmt: skip
    else:
        print(f"{len(rows)} chunks: {'min':>12} {'median':>12} {'max':>12}")
        columns: dict[str, tuple[list[float], Callable[[float], str]]] = {
            "share": ([r[3] for r in rows], mib),
            "sent": ([r[4] for r in rows], mib),
            "sent/share": ([r[4] / r[3] for r in rows], lambda v: f"{v:12.3f}"),
            "received": ([r[5] for r in rows], mib),
            "segment": ([r[6] for r in rows], mib),
            "recv-seg (B)": ([r[5] - r[6] for r in rows], lambda v: f"{v:12.0f}"),
        }
        for label, (values, shown) in columns.items():
            print(f"{label:>12}: {shown(min(values))} {shown(median(values))} {shown(max(values))}")
    print("\ntotals per network run")
    for run in runs:
        sent = sum(moved["sent"] for moved in run.moved.values())
        received = sum(moved["received"] for moved in run.moved.values())
        segments = sum(int(result["bytes"]) for result in run.results)
        print(f"source {mib(source_bytes)}   sent {mib(sent)} = {sent / source_bytes:.3f}x the source   "
              f"received {mib(received)} (segments {mib(segments)})")  # fmt: skip
        print(f"  counted by worker: sent {mib(run.worker['bytes_sent'])}   "
              f"received {mib(run.worker['bytes_received'])}")  # fmt: skip


def print_times(by_kind: dict[str, list[Run]]) -> None:
    print("\ntime (medians over every chunk of every run of each kind; a chunk's seconds include its "
          "commit)")  # fmt: skip
    seconds = {kind: median([float(r["seconds"]) for run in runs for r in run.results])
               for kind, runs in by_kind.items()}  # fmt: skip
    commits = {kind: median([float(r["commit_seconds"]) for run in runs for r in run.results])
               for kind, runs in by_kind.items()}  # fmt: skip
    walls = {kind: median([run.wall for run in runs]) for kind, runs in by_kind.items()}
    shared, network = seconds["shared"], seconds["network"]
    print(f"{'':34} {'shared (baseline)':>18} {'network':>10} {'difference':>11}")
    print(f"{'chunk seconds':34} {shared:16.2f} s {network:8.2f} s {network - shared:+9.2f} s = "
          f"{100 * (network - shared) / shared:+.1f}% of the shared chunk")  # fmt: skip
    print(f"{'commit seconds (rename / upload)':34} {commits['shared']:16.3f} s {commits['network']:8.3f} s "
          f"{commits['network'] - commits['shared']:+9.3f} s")  # fmt: skip
    print(f"{'commit as a share of the chunk':34} {100 * commits['shared'] / shared:16.2f} % "
          f"{100 * commits['network'] / network:8.2f} %")  # fmt: skip
    print(f"{'whole run, wall':34} {walls['shared']:16.1f} s {walls['network']:8.1f} s "
          f"{walls['network'] - walls['shared']:+9.1f} s = "
          f"{100 * (walls['network'] - walls['shared']) / walls['shared']:+.1f}%")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--container", choices=("mp4", "mkv"), default="mp4",
                        help="mp4 (moov at the end, the default) or mkv")  # fmt: skip
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--chunk-frames", type=int, default=None, help="(default: ute's, about 10 s)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each, interleaved (medians)")
    args = parser.parse_args()
    encode_options = ["--preset", args.preset]
    if args.chunk_frames:
        encode_options += ["--chunk-frames", str(args.chunk_frames)]
    with tempfile.TemporaryDirectory(prefix="ute-transfer-bench-") as scratch:
        folder = Path(scratch)
        media = folder / "media"  # the coordinator's folder; Redis's data stays out of it
        media.mkdir()
        source = make_source(media, args.seconds, args.size, args.container)
        plan = json.loads(ute("plan", str(source), "--json", *encode_options[2:]))
        chunk_count, total_frames = len(plan["chunks"]), int(plan["frames"])
        source_bytes = source.stat().st_size
        by_kind: dict[str, list[Run]] = {kind: [] for kind in KINDS}
        with private_redis(folder / "redis") as url:
            for number in range(args.runs):
                for kind in KINDS:
                    run = one_run(kind, source, media / f"{kind}-{number}", url, encode_options, chunk_count)
                    by_kind[kind].append(run)
            state.connect(url).flushdb()
        print(f"clip: {args.size}, {total_frames} frames, {args.container.upper()} of "
              f"{mib(source_bytes).strip()} (H.264 + AAC), preset {args.preset}, {chunk_count} chunks, "
              f"1 worker, loopback, {args.runs} run(s) of each")  # fmt: skip
        print_bytes(by_kind["network"], source_bytes, total_frames)
        print_times(by_kind)


if __name__ == "__main__":
    main()
