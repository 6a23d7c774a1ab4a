from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ute.plan import Chunk, ChunkBounds, plan_chunks, target_frames


@st.composite
def videos(draw: st.DrawFn) -> tuple[int, list[int], ChunkBounds]:
    frame_count = draw(st.integers(min_value=1, max_value=5000))
    keyframes = draw(st.lists(st.integers(min_value=0, max_value=frame_count - 1), max_size=200))
    target = draw(st.integers(min_value=1, max_value=600))
    return frame_count, [0, *keyframes], ChunkBounds.around(target)


@given(videos())
def test_chunks_cover_every_frame_exactly_once_in_order(video) -> None:
    frame_count, keyframes, bounds = video
    chunks = plan_chunks(frame_count, keyframes, bounds)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0
    assert chunks[-1].end == frame_count
    for previous, current in itertools.pairwise(chunks):
        assert previous.end == current.start
    assert all(c.frames > 0 for c in chunks)
    assert sum(c.frames for c in chunks) == frame_count


@given(videos())
def test_chunks_start_on_keyframes(video) -> None:
    frame_count, keyframes, bounds = video
    assert {c.start for c in plan_chunks(frame_count, keyframes, bounds)} <= set(keyframes)


@given(videos())
def test_no_chunk_is_shorter_than_the_minimum_unless_it_is_the_whole_file(video) -> None:
    frame_count, keyframes, bounds = video
    chunks = plan_chunks(frame_count, keyframes, bounds)
    if len(chunks) > 1:
        assert all(c.frames >= bounds.min_frames for c in chunks)


@given(videos())
def test_a_chunk_passes_the_maximum_only_where_no_keyframe_allowed_a_cut(video) -> None:
    frame_count, keyframes, bounds = video
    for chunk in plan_chunks(frame_count, keyframes, bounds):
        if chunk.frames > bounds.max_frames:
            allowed = range(chunk.start + bounds.min_frames,
                            min(chunk.start + bounds.max_frames, frame_count - bounds.min_frames) + 1)
            assert not any(k in allowed for k in keyframes)


def test_regular_keyframes_give_chunks_of_the_target_length() -> None:
    chunks = plan_chunks(1000, range(0, 1000, 50), ChunkBounds.around(200))
    assert [c.frames for c in chunks] == [200] * 5


def test_a_short_tail_is_merged_into_the_last_chunk() -> None:
    chunks = plan_chunks(1030, range(0, 1030, 10), ChunkBounds.around(200))
    assert chunks[-1] == Chunk(4, 800, 1030)


def test_sparse_keyframes_give_longer_chunks() -> None:
    chunks = plan_chunks(3000, [0, 1500], ChunkBounds.around(100))
    assert chunks == [Chunk(0, 0, 1500), Chunk(1, 1500, 3000)]


def test_no_frames_no_chunks() -> None:
    assert plan_chunks(0, [0], ChunkBounds.around(10)) == []


def test_target_defaults_to_about_ten_seconds() -> None:
    assert target_frames(23.976, None, 172_800) == 240
    assert target_frames(50.0, None, 4000) == 500
    assert target_frames(25.0, 96, 100) == 96


def test_a_short_file_is_shared_among_workers_in_chunks_of_at_least_five_seconds() -> None:
    assert target_frames(24.0, None, 24 * 30) == 180  # 30 s: 4 chunks of 7.5 s
    assert target_frames(24.0, None, 24 * 10) == 120  # 10 s: 2 of 5 s
    assert target_frames(24.0, None, 24 * 3) == 120  # shorter than one: the whole file
    assert target_frames(24.0, None, 24 * 40) == 240


@given(fps=st.floats(1.0, 240.0), frame_count=st.integers(1, 10**6))
def test_the_target_lies_between_the_shortest_and_the_default_chunk(fps: float, frame_count: int) -> None:
    target = target_frames(fps, None, frame_count)
    assert max(1, round(fps * 5)) <= target <= max(1, round(fps * 10))
    if frame_count >= 4 * round(fps * 10):
        assert target == max(1, round(fps * 10))
