"""Transfer detection and outcome folders, on real files and real probes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from media import make_clip

from ute import state
from ute.inbox import Arrival, InboxLayout, InboxWatcher, Refusal, open_for_writing

SETTLE, STALL = 0.3, 3.0


@pytest.fixture
def layout(tmp_path: Path) -> InboxLayout:
    layout = InboxLayout(tmp_path / "inbox")
    layout.create()
    return layout


def watch(layout: InboxLayout, seconds: float) -> list[Arrival | Refusal]:
    """Poll like the service does, for a while; return everything offered."""
    watcher = InboxWatcher(layout, SETTLE, STALL, rescan_seconds=0.1)
    results: list[Arrival | Refusal] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        results += watcher.poll()
        time.sleep(0.05)
    watcher.stop()
    return results


def test_complete_files_arrive_with_their_queue(layout: InboxLayout, tmp_path: Path) -> None:
    make_clip(layout.root / "b.mkv", seconds=1)
    make_clip(layout.high / "a.mkv", seconds=1)
    results = watch(layout, 2.0)
    assert [(r.path.name, r.queue) for r in results if isinstance(r, Arrival)] == [
        ("a.mkv", state.QUEUE_HIGH), ("b.mkv", state.QUEUE_LOW)]  # fmt: skip
    assert results[0].info.frame_count == 24  # type: ignore[union-attr]


def test_a_copy_that_stalls_mid_way_is_neither_started_nor_failed(layout: InboxLayout,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    whole = make_clip(tmp_path / "whole.mkv", seconds=6).read_bytes()
    copy = layout.root / "slow.mkv"
    copy.write_bytes(whole[: len(whole) // 2])  # the writer even closes the file in between
    watcher = InboxWatcher(layout, SETTLE, STALL, rescan_seconds=0.1)
    results: list[Arrival | Refusal] = []
    deadline = time.monotonic() + STALL * 0.6
    while time.monotonic() < deadline:
        results += watcher.poll()
        time.sleep(0.05)
    assert results == []
    with copy.open("ab") as rest:
        rest.write(whole[len(whole) // 2 :])
    deadline = time.monotonic() + 30
    while not results and time.monotonic() < deadline:
        results += watcher.poll()
        time.sleep(0.05)
    watcher.stop()
    assert len(results) == 1 and isinstance(results[0], Arrival)
    assert results[0].info.frame_count == 144


def test_a_file_open_for_writing_waits(layout: InboxLayout, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", seconds=1).read_bytes()
    target = layout.root / "writing.mkv"
    with target.open("wb") as writer:
        writer.write(clip)
        writer.flush()
        assert open_for_writing(target)
        assert watch(layout, 1.0) == []
    assert not open_for_writing(target)
    assert [r.path.name for r in watch(layout, 2.0)] == ["writing.mkv"]


def test_a_broken_file_is_refused_only_after_the_stall_window(layout: InboxLayout) -> None:
    (layout.root / "empty.mkv").write_bytes(b"")
    (layout.root / "broken.mkv").write_bytes(bytes.fromhex("1a45dfa3") + b"not a video\n" * 50)
    assert watch(layout, STALL * 0.5) == []
    refusals = watch(layout, STALL + 3)
    assert sorted((r.path.name, type(r)) for r in refusals) == [
        ("broken.mkv", Refusal), ("empty.mkv", Refusal)]  # fmt: skip


def test_hidden_partial_and_sidecar_files_are_ignored(layout: InboxLayout) -> None:
    for name in (".hidden.mkv", "movie.mkv.part", "movie.mkv.ute.toml", "x.mkv.error.txt"):
        (layout.root / name).write_text("x")
    assert layout.candidates() == []


def test_outcome_folders_never_overwrite(layout: InboxLayout) -> None:
    for _ in range(2):
        source = layout.root / "movie.mkv"
        source.write_text("video")
        layout.move_to_done(source)
    assert sorted(p.name for p in layout.done.iterdir()) == ["movie (2).mkv", "movie.mkv"]
    broken = layout.root / "broken.mkv"
    broken.write_text("x")
    moved = layout.move_to_failed(broken, "it is broken")
    assert moved.with_name("broken.mkv.error.txt").read_text() == "it is broken\n"
