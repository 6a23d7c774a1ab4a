"""The file lifecycle in milliseconds: the pure transition table, and the one driver (that both
`ute encode` and `ute serve` use) against the real test Redis, with an in-process rq SimpleWorker
and a stand-in encoder: these tests are about states, not pictures."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from media import make_clip
from rq import SimpleWorker
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from ute import control, jobs, pipeline, state, submit
from ute.driver import Driver, FileRun
from ute.errors import EncodeError, UteError
from ute.lifecycle import TABLE, Action, Event, FileState, Transition, transition
from ute.pipeline import PreparedFile
from ute.probe import probe
from ute.settings import EncodeSettings

# ---- the table ------------------------------------------------------------------------------

LIVE = [s for s in FileState if not s.terminal]


@given(st.sampled_from(FileState), st.lists(st.sampled_from(Event), max_size=30))
def test_no_event_leads_out_of_an_end_state(start: FileState, events: list[Event]) -> None:
    current = start
    for event in events:
        was_terminal = current.terminal
        nxt = transition(current, event).state
        assert not was_terminal or nxt is current
        current = nxt


@given(st.lists(st.sampled_from(Event), max_size=40))
def test_done_only_ever_follows_finishing_and_chunks_done(events: list[Event]) -> None:
    current, seen = FileState.QUEUED, [FileState.QUEUED]
    for event in events:
        current = transition(current, event).state
        seen.append(current)
    if FileState.DONE in seen:
        done_at = seen.index(FileState.DONE)
        assert seen[done_at - 1] is FileState.FINISHING
        assert FileState.ENCODING in seen[:done_at]


def test_a_file_being_finished_is_always_finished() -> None:
    for event in (Event.PAUSE, Event.CANCEL, Event.NO_ROOM, Event.RESUME, Event.CHUNKS_DONE, Event.MOVE):
        assert transition(FileState.FINISHING, event) == transition(FileState.FINISHING, Event.PREPARED)
        assert transition(FileState.FINISHING, event).state is FileState.FINISHING
        assert transition(FileState.FINISHING, event).actions == ()


@pytest.mark.parametrize("live", [FileState.QUEUED, FileState.ENCODING, FileState.PAUSED])
def test_cancel_and_failure_drop_the_chunks_from_every_live_state(live: FileState) -> None:
    assert transition(live, Event.CANCEL).state is FileState.CANCELLED
    assert transition(live, Event.CANCEL).actions == (Action.STOP_CHUNKS, Action.CLEAR_CHUNKS,
                                                      Action.RECORD_CANCELLED)  # fmt: skip
    assert transition(live, Event.FAILED).actions == (Action.STOP_CHUNKS, Action.CLEAR_CHUNKS,
                                                      Action.RECORD_FAILED)  # fmt: skip


def test_pause_holds_chunks_and_resume_goes_back_through_queued() -> None:
    assert transition(FileState.ENCODING, Event.PAUSE) == transition(FileState.PAUSED, Event.PAUSE)
    assert transition(FileState.ENCODING, Event.PAUSE).actions == (Action.HOLD_CHUNKS,)
    assert transition(FileState.PAUSED, Event.RESUME).state is FileState.QUEUED
    assert transition(FileState.QUEUED, Event.PREPARED).state is FileState.ENCODING
    no_room = transition(FileState.ENCODING, Event.NO_ROOM)
    assert no_room.state is FileState.ENCODING and no_room.actions == (Action.HOLD_CHUNKS,)


def test_a_move_changes_no_state_and_holds_the_queued_chunks_of_an_encoding_file() -> None:
    """The driver's next look queues them on the new queue; a paused file's are held already."""
    assert transition(FileState.ENCODING, Event.MOVE) == Transition(FileState.ENCODING, (Action.HOLD_CHUNKS,))
    # Chunks queued before a restart: the driver holds them once the plan is ready.
    assert transition(FileState.QUEUED, Event.MOVE) == Transition(FileState.QUEUED, (Action.HOLD_CHUNKS,))
    assert transition(FileState.PAUSED, Event.MOVE) == Transition(FileState.PAUSED)
    for state_ in FileState:
        assert transition(state_, Event.MOVE).state is state_


def test_every_entry_of_the_table_is_a_live_state_and_each_end_state_is_reachable() -> None:
    assert {state for state, _ in TABLE} <= set(LIVE)
    reachable = {t.state for t in TABLE.values()}
    assert {FileState.DONE, FileState.FAILED, FileState.CANCELLED} <= reachable
    assert all(s.value == s.value.lower() for s in FileState)  # what `ute status` prints


# ---- the driver -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreparedFile]:
    folder = tmp_path_factory.mktemp("lifecycle")
    source = make_clip(folder / "movie.mkv", seconds=3, size="64x36")
    return folder, pipeline.prepare(probe(source), EncodeSettings(chunk_frames=24), folder / ".ute-work")


class Owner:
    """Records what the driver asked of it; finishing waits until the test lets it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.let_finish = threading.Event()
        self.let_finish.set()

    def finish_work(self, run: FileRun) -> Callable[[], Any]:
        self.calls.append("finish_work")

        def work() -> str:
            self.let_finish.wait(10)
            return "the output"

        return work

    def done(self, run: FileRun) -> None:
        self.calls.append("done")

    def failed(self, run: FileRun) -> None:
        self.calls.append(f"failed: {run.error}")

    def cancelled(self, run: FileRun) -> None:
        self.calls.append("cancelled")


class Room:
    def __init__(self) -> None:
        self.free = True

    def check(self) -> bool:
        return self.free

    def chunks_found_no_space(self, failed: object) -> None:
        pass


@pytest.fixture
def farm(clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A driver, its owner and room, and a stand-in encoder whose chunks succeed unless told."""
    failing: set[int] = set()

    def stand_in_encoder(chunk_json: dict[str, Any]) -> dict[str, Any]:
        if chunk_json["index"] in failing:
            raise EncodeError(f"chunk {chunk_json['index']}: the stand-in encoder fails it")
        return {"index": chunk_json["index"], "frames": chunk_json["frames"]}

    monkeypatch.setattr(jobs, "encode_chunk", stand_in_encoder)
    monkeypatch.setattr(pipeline, "lost_segments", lambda prepared: [])  # no real segments here
    monkeypatch.setenv("UTE_RETRY_DELAYS", ",")  # no retries: a failure is final
    connection = state.connect(clean_redis)
    owner, room = Owner(), Room()
    with ThreadPoolExecutor(2) as helpers:
        driver = Driver(connection, owner, room, helpers)  # type: ignore[arg-type]
        yield {"driver": driver, "owner": owner, "room": room, "connection": connection, "failing": failing}
    owner.let_finish.set()


def prepared_as(template: tuple[Path, PreparedFile], name: str) -> PreparedFile:
    """The template's plan under a file id of its own (so that files' chunks never meet)."""
    folder, planned = template
    file_id = hashlib.sha256(name.encode()).hexdigest()[:16]
    work_id = state.work_id(file_id, "{}")
    return dataclasses.replace(planned, file_id=file_id, work_id=work_id, work_dir=folder / work_id,
                               specs=tuple(pipeline.chunk_specs(planned.info, planned.chunks, work_id)))


def add(farm: dict[str, Any], template: tuple[Path, PreparedFile], *, queue: str = state.QUEUE_LOW,
        name: str = "movie", prepare: Callable[[], PreparedFile] | None = None) -> FileRun:  # fmt: skip
    prepared = prepared_as(template, name)
    run = FileRun(prepared.file_id, template[0] / f"{name}.mkv", queue)
    farm["driver"].add(run, prepare or (lambda: prepared), frames_total=prepared.info.frame_count)
    return run


def add_encoding(farm: dict[str, Any], template: tuple[Path, PreparedFile]) -> FileRun:
    """A file taken on and stepped until its chunks are queued."""
    run = add(farm, template)
    settle(farm["driver"], run, lambda: run.state is FileState.ENCODING)
    return run


def settle(driver: Driver, run: FileRun, until: Callable[[], bool], steps: int = 200) -> None:
    for _ in range(steps):
        driver.step()
        if until():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{run.name} stayed {run.state}")


def work_off(connection: Any) -> None:
    """Every queued chunk through an in-process rq worker, then back."""
    queues = [state.queue(name, connection) for name in state.QUEUES]
    SimpleWorker(queues, connection=connection, serializer=JSONSerializer).work(burst=True)


def record(farm: dict[str, Any], run: FileRun) -> dict[str, str]:
    return state.file_record(farm["connection"], run.file_id) or {}


def queued(farm: dict[str, Any]) -> int:
    return sum(state.queue(name, farm["connection"]).count for name in state.QUEUES)


def test_a_file_goes_from_queued_to_done(farm: dict[str, Any], prepared_template: Any) -> None:
    driver, owner = farm["driver"], farm["owner"]
    run = add(farm, prepared_template)
    assert record(farm, run)["state"] == "queued"
    settle(driver, run, lambda: run.state is FileState.ENCODING)
    chunks = len(prepared_template[1].chunks)
    assert queued(farm) == chunks
    assert record(farm, run)["work_id"] == prepared_as(prepared_template, "movie").work_id
    work_off(farm["connection"])
    settle(driver, run, lambda: run.state is FileState.DONE)
    assert owner.calls == ["finish_work", "done"] and run.result == "the output"
    assert record(farm, run)["state"] == "done" and run.file_id not in driver.runs


def test_pause_holds_the_queued_chunks_and_resume_queues_them_again(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    control.pause(connection, run.file_id)
    settle(driver, run, lambda: run.state is FileState.PAUSED)
    assert queued(farm) == 0 and record(farm, run)["state"] == "paused"
    work_off(connection)  # nothing to take
    driver.step()
    assert run.state is FileState.PAUSED
    control.resume(connection, run.file_id)
    settle(driver, run, lambda: run.state is FileState.ENCODING and queued(farm) > 0)
    assert queued(farm) == len(prepared_template[1].chunks)
    work_off(connection)
    settle(driver, run, lambda: run.state is FileState.DONE)


def test_a_chunk_deleted_as_a_worker_starts_it_leaves_no_job_and_no_crash(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    """A paused file's queued chunk is deleted just as a worker takes it: rq's worker then writes
    the fields of a started job back under the deleted key (it ended a `ute serve` in a CI run)."""
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    prepared = prepared_as(prepared_template, "movie")
    job = state.current_chunk_jobs(connection, prepared.work_id, len(prepared.chunks))[0]
    assert job is not None
    connection.delete(job.key)
    with connection.pipeline() as pipe:
        job.prepare_for_execution("a-worker", pipe)  # what rq's worker writes as it starts a job
        pipe.execute()
    assert connection.hget(job.key, "status") == b"started" and not connection.hexists(job.key, "data")
    control.pause(connection, run.file_id)
    settle(driver, run, lambda: run.state is FileState.PAUSED)
    assert state.current_chunk_jobs(connection, prepared.work_id, len(prepared.chunks)) == [None] * len(
        prepared.chunks)  # fmt: skip


def test_cancel_drops_every_chunk_and_the_owner_hears_of_it(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    control.cancel(connection, run.file_id)
    settle(driver, run, lambda: run.state is FileState.CANCELLED)
    prepared = prepared_as(prepared_template, "movie")
    assert queued(farm) == 0
    assert state.current_chunk_jobs(connection, prepared.work_id, len(prepared.chunks)) == [None] * len(
        prepared.chunks)  # fmt: skip
    assert farm["owner"].calls == ["cancelled"]
    assert record(farm, run)["state"] == "cancelled" and record(farm, run)["control"] == ""


def test_a_chunk_that_fails_for_good_fails_the_file_and_clears_its_chunks(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, connection = farm["driver"], farm["connection"]
    farm["failing"].add(1)
    run = add_encoding(farm, prepared_template)
    work_off(connection)
    settle(driver, run, lambda: run.state is FileState.FAILED)
    assert farm["owner"].calls == ["failed: chunk 1: the stand-in encoder fails it"]
    assert record(farm, run)["error"] == "chunk 1: the stand-in encoder fails it"
    prepared = prepared_as(prepared_template, "movie")
    assert set(state.current_chunk_jobs(connection, prepared.work_id, len(prepared.chunks))) == {None}


def test_a_failing_preparation_fails_the_file(farm: dict[str, Any], prepared_template: Any) -> None:
    def refuse() -> PreparedFile:
        raise EncodeError("movie.mkv: the pre plugin refused it")

    run = add(farm, prepared_template, prepare=refuse)
    settle(farm["driver"], run, lambda: run.state is FileState.FAILED)
    assert farm["owner"].calls == ["failed: movie.mkv: the pre plugin refused it"] and queued(farm) == 0


def test_no_room_holds_the_chunks_until_there_is(farm: dict[str, Any], prepared_template: Any) -> None:
    driver, room = farm["driver"], farm["room"]
    room.free = False
    run = add(farm, prepared_template)
    for _ in range(5):
        driver.step()
    assert run.state is FileState.QUEUED and queued(farm) == 0, "nothing is queued without room"
    room.free = True
    settle(driver, run, lambda: run.state is FileState.ENCODING)
    assert queued(farm) == len(prepared_template[1].chunks)
    room.free = False
    driver.step()
    assert run.state is FileState.ENCODING and queued(farm) == 0


def test_a_file_being_finished_is_finished_though_it_is_cancelled(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, owner = farm["driver"], farm["owner"]
    owner.let_finish.clear()
    run = add_encoding(farm, prepared_template)
    work_off(farm["connection"])
    settle(driver, run, lambda: run.state is FileState.FINISHING)
    assert driver.finishing()
    # `ute cancel` refuses a file being muxed; a request standing from before must not stop it either
    state.save_file_record(farm["connection"], run.file_id, control=control.CANCEL)
    driver.step()
    owner.let_finish.set()
    settle(driver, run, lambda: run.state is FileState.DONE)
    assert owner.calls == ["finish_work", "done"]


def test_files_are_queued_in_arrival_order_within_their_queue(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    """A later file whose plan is ready first still waits for the file that arrived before it in
    the same queue; a file in the other queue does not wait."""
    driver = farm["driver"]
    slow_plan = threading.Event()


    def first_plan() -> PreparedFile:
        slow_plan.wait(10)
        return prepared_as(prepared_template, "first")

    first = add(farm, prepared_template, name="first", prepare=first_plan)
    second = add(farm, prepared_template, name="second")
    high = add(farm, prepared_template, name="high", queue=state.QUEUE_HIGH)
    settle(driver, high, lambda: high.state is FileState.ENCODING)
    for _ in range(5):
        driver.step()
    assert first.state is FileState.QUEUED and second.state is FileState.QUEUED
    slow_plan.set()
    settle(driver, second, lambda: second.state is FileState.ENCODING)
    assert first.state is FileState.ENCODING
    statuses = [job.get_status() for job in state.queue(state.QUEUE_LOW, farm["connection"]).jobs]
    assert set(statuses) == {JobStatus.QUEUED}


def test_a_chunk_stopped_by_someone_is_queued_again_not_failed(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    """As a cancel's stop that reaches the worker after the jobs were cleared leaves it, for the
    same file taken again by `ute retry`."""
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    prepared = prepared_as(prepared_template, "movie")
    [first, *_] = state.current_chunk_jobs(connection, prepared.work_id, len(prepared.chunks))
    assert first is not None
    state.queue(state.QUEUE_LOW, connection).remove(first.id)
    first.set_status(JobStatus.STOPPED)
    driver.step()
    assert run.state is FileState.ENCODING and first.get_status() is JobStatus.QUEUED
    work_off(connection)
    settle(driver, run, lambda: run.state is FileState.DONE)


def test_a_look_reads_whole_records_only_of_running_and_failed_chunks(
    farm: dict[str, Any], prepared_template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """A poll of a long film reads one status field per unfinished chunk, and nothing of the
    chunks it found finished before."""
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    fetched: list[str] = []  # from here on: submitting the chunks read their jobs
    real_fetch = state.fetch_jobs
    monkeypatch.setattr(state, "fetch_jobs", lambda c, ids: fetched.extend(ids) or real_fetch(c, ids))
    driver.step()
    assert fetched == [], "queued chunks are read by their status alone"
    work_off(connection)
    driver.step()
    chunks = len(prepared_template[1].chunks)
    assert run.done_chunks == set(range(chunks)) or run.state is FileState.FINISHING
    assert fetched == []


def test_a_queued_chunk_in_no_queue_is_queued_again(
    farm: dict[str, Any], prepared_template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """As a worker that took it off the queue when Redis went down leaves it."""
    import ute.driver
    import ute.monitor

    monkeypatch.setattr(ute.monitor, "ORPHAN_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(ute.driver, "MONITOR_EVERY_SECONDS", 0.0)
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    low = state.queue(state.QUEUE_LOW, connection)
    orphan = low.get_job_ids()[0]
    low.remove(orphan)
    driver.step()
    driver.step()
    assert orphan not in low.get_job_ids() and low.get_job_ids()[0].endswith("-g1")
    work_off(connection)
    settle(driver, run, lambda: run.state is FileState.DONE)


def in_queue(farm: dict[str, Any], name: str) -> list[str]:
    return state.queue(name, farm["connection"]).get_job_ids()


def test_moving_an_encoding_file_moves_its_queued_chunks_and_leaves_running_ones(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    chunks = len(prepared_template[1].chunks)
    [running, *waiting] = in_queue(farm, state.QUEUE_LOW)
    state.queue(state.QUEUE_LOW, connection).remove(running)  # as a worker takes it
    [job] = state.fetch_jobs(connection, [running])
    assert job is not None
    job.set_status(JobStatus.STARTED)
    state.beat(connection, running, "a worker")
    message = control.move(connection, run.file_id, state.QUEUE_HIGH)
    assert message.startswith("moving movie.mkv to queue high"), message
    assert record(farm, run)["queue"] == "high", "`ute status` shows it at once"
    driver.step()
    assert run.queue == state.QUEUE_HIGH and run.state is FileState.ENCODING
    assert in_queue(farm, state.QUEUE_LOW) == []
    assert len(in_queue(farm, state.QUEUE_HIGH)) == len(waiting) == chunks - 1
    assert job.get_status() is JobStatus.STARTED, "the running chunk finishes where it is"
    assert "already" in control.move(connection, run.file_id, state.QUEUE_HIGH)
    work_off(connection)
    driver.step()
    assert len(run.done_chunks) == chunks - 1


def test_moving_a_queued_file_changes_the_queue_its_chunks_go_to(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, connection = farm["driver"], farm["connection"]
    plan_ready = threading.Event()

    def slow_plan() -> PreparedFile:
        plan_ready.wait(10)
        return prepared_as(prepared_template, "movie")

    run = add(farm, prepared_template, prepare=slow_plan)
    control.move(connection, run.file_id, state.QUEUE_HIGH)
    driver.step()
    assert run.state is FileState.QUEUED and run.queue == state.QUEUE_HIGH
    plan_ready.set()
    settle(driver, run, lambda: run.state is FileState.ENCODING)
    assert in_queue(farm, state.QUEUE_LOW) == []
    assert len(in_queue(farm, state.QUEUE_HIGH)) == len(prepared_template[1].chunks)
    work_off(connection)
    settle(driver, run, lambda: run.state is FileState.DONE)


def test_a_file_being_muxed_an_unknown_file_and_an_unknown_queue_cannot_move(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    driver, connection, owner = farm["driver"], farm["connection"], farm["owner"]
    owner.let_finish.clear()
    run = add_encoding(farm, prepared_template)
    with pytest.raises(UteError, match=rf"cannot move {run.file_id} to queue 'medium': use high or low"):
        control.move(connection, run.file_id, "medium")
    work_off(connection)
    settle(driver, run, lambda: run.state is FileState.FINISHING)
    with pytest.raises(UteError, match=rf"{run.file_id} is muxing: only queued, encoding or paused"):
        control.move(connection, run.file_id, state.QUEUE_HIGH)
    with pytest.raises(UteError, match=r"no file nope in Redis: `ute status` lists the ids"):
        control.move(connection, "nope", state.QUEUE_HIGH)
    assert record(farm, run)["queue"] == "low" and "move_to" not in record(farm, run)
    owner.let_finish.set()
    settle(driver, run, lambda: run.state is FileState.DONE)


def test_a_move_survives_a_restart_and_is_carried_out_once(
    farm: dict[str, Any], prepared_template: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """Asked for while the service was down: its chunks from before wait in the old queue, and
    the restarted service, which takes the file in the queue it arrived in, moves them."""
    connection = farm["connection"]
    first = add_encoding(farm, prepared_template)
    chunks = len(prepared_template[1].chunks)
    control.move(connection, first.file_id, state.QUEUE_HIGH)
    holds: list[str] = []
    real_take_off_queue = control.take_off_queue

    def take_off_queue(connection: Any, work_id: str, chunk_count: int, *, stop_running: bool) -> None:
        holds.append(work_id)
        real_take_off_queue(connection, work_id, chunk_count, stop_running=stop_running)

    monkeypatch.setattr(control, "take_off_queue", take_off_queue)
    restarted = Driver(connection, farm["owner"], farm["room"], farm["driver"].helpers)
    prepared = prepared_as(prepared_template, "movie")
    run = FileRun(first.file_id, first.source, state.QUEUE_LOW)  # the queue of its inbox folder
    restarted.add(run, lambda: prepared, frames_total=prepared.info.frame_count)
    assert record(farm, run)["queue"] == "low"
    settle(restarted, run, lambda: run.state is FileState.ENCODING)
    assert run.queue == state.QUEUE_HIGH and record(farm, run)["queue"] == "high"
    assert in_queue(farm, state.QUEUE_LOW) == []
    assert len(in_queue(farm, state.QUEUE_HIGH)) == chunks
    for _ in range(5):
        restarted.step()
    assert len(holds) == 1 and len(in_queue(farm, state.QUEUE_HIGH)) == chunks
    work_off(connection)
    settle(restarted, run, lambda: run.state is FileState.DONE)


def test_a_chunk_requeued_after_a_move_goes_to_its_files_new_queue(
    farm: dict[str, Any], prepared_template: Any
) -> None:  # fmt: skip
    """A chunk running during the move, whose worker then dies, is requeued by the monitor: in
    the queue the file is in now, not the one the job came from."""
    driver, connection = farm["driver"], farm["connection"]
    run = add_encoding(farm, prepared_template)
    [running, *_] = in_queue(farm, state.QUEUE_LOW)
    state.queue(state.QUEUE_LOW, connection).remove(running)  # as a worker takes it
    [job] = state.fetch_jobs(connection, [running])
    assert job is not None
    job.set_status(JobStatus.STARTED)
    control.move(connection, run.file_id, state.QUEUE_HIGH)
    driver.step()
    assert submit.requeue_at_front(connection, job)  # as the monitor does for a dead worker's chunk
    assert in_queue(farm, state.QUEUE_LOW) == []
    assert in_queue(farm, state.QUEUE_HIGH)[0] == state.chunk_job_id(job.args[0]["work_id"], 0, 1)


def test_a_request_for_a_file_that_ended_changes_nothing(farm: dict[str, Any]) -> None:
    """pause, resume, cancel and move write in one transaction with the check of the file's
    state: a file that ended keeps its hour-long expiry, an unknown one gets no record."""
    connection = farm["connection"]
    state.save_file_record(connection, "aaaaaaaaaaaaaaaa", source="/v/a.mkv", state="encoding", queue="low")
    state.finish_file_record(connection, "aaaaaaaaaaaaaaaa", "done", control="", move_to="")
    for request in (control.pause, control.cancel, control.resume,
                    lambda c, file_id: control.move(c, file_id, state.QUEUE_HIGH)):  # fmt: skip
        with pytest.raises(UteError, match="aaaaaaaaaaaaaaaa is done"):
            request(connection, "aaaaaaaaaaaaaaaa")
        with pytest.raises(UteError, match="no file bbbbbbbbbbbbbbbb in Redis"):
            request(connection, "bbbbbbbbbbbbbbbb")
    assert 0 < connection.ttl(f"{state.KEY_PREFIX}file:aaaaaaaaaaaaaaaa") <= state.FINISHED_FILE_TTL_SECONDS
    assert state.file_record(connection, "bbbbbbbbbbbbbbbb") is None
    assert (state.file_record(connection, "aaaaaaaaaaaaaaaa") or {}).get("control") == ""


# ---- chunk events ------------------------------------------------------------------------------


@given(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), st.integers(0, 99_999),
       st.integers(0, 50))  # fmt: skip
def test_a_chunk_job_id_names_its_file(file_id: str, index: int, generation: int) -> None:
    job_id = state.chunk_job_id(state.work_id(file_id, "{}"), index, generation)
    assert state.file_id_of_chunk_job(job_id) == file_id
    assert state.file_id_of_chunk_job("some-other-job") is None


def test_only_a_chunk_of_its_own_files_wakes_the_driver(clean_redis: str) -> None:
    """Another coordinator's chunks end on the same Redis without waking this one."""
    from ute.driver import _wake_on_chunk_events

    connection = state.connect(clean_redis)
    mine, theirs = (state.chunk_job_id(state.work_id(file_id, "{}"), 0) for file_id in ("a" * 16, "b" * 16))
    asked: list[str] = []

    def wanted(job_id: str) -> bool:
        asked.append(job_id)
        return job_id == mine

    woken = threading.Event()
    listening = _wake_on_chunk_events(connection, woken, wanted)
    try:
        while not asked:  # until the listener has subscribed and heard one
            state.announce_chunk_ended(connection, theirs)
            woken.wait(0.05)
        assert not woken.is_set() and set(asked) == {theirs}
        state.announce_chunk_ended(connection, mine)
        assert woken.wait(30)
    finally:
        listening.clear()
