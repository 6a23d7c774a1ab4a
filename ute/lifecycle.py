"""The life of one file, as data: its states, the events that move it on, and the pure transition
function that says where each event leads and what has to be done. No I/O: ute.driver runs the
actions, for `ute encode` (one file) and `ute serve` (many) alike.

    QUEUED ──prepared──▶ ENCODING ──chunks done──▶ FINISHING ──finished──▶ DONE
      ▲  │                 │  ▲ no room: hold            │
      │  └─pause─▶ PAUSED ◀┘  │                          └──failed──▶ FAILED
      └─────resume────┘  (pause: hold)      any but FINISHING ──cancel──▶ CANCELLED

A file being finished (muxed, verified, post-processed) is always finished: pause, cancel and a
full disk wait for it. `ute move` changes the queue of a queued, encoding or paused file; an
encoding file's queued chunks leave the old queue, and the driver's next look queues them on the
new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FileState(StrEnum):
    """What `ute status` shows for a file (the values are what it prints)."""

    QUEUED = "queued"  # taken: settings, pre plugins and plan are prepared, then it waits its turn
    ENCODING = "encoding"  # its chunks are queued or being encoded
    PAUSED = "paused"  # `ute pause`: queued chunks are held back, running ones finish
    FINISHING = "muxing"  # muxed, verified, then its post plugins run
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (FileState.DONE, FileState.FAILED, FileState.CANCELLED)


class Event(StrEnum):
    PREPARED = "prepared"  # its plan is ready, it is its turn in its queue, and there is room
    PAUSE = "pause"  # `ute pause` stands (sent on every look while it does)
    RESUME = "resume"  # `ute resume`: the pause is gone
    CANCEL = "cancel"  # `ute cancel`
    NO_ROOM = "no room"  # a disk UTE writes to is nearly full
    CHUNKS_DONE = "chunks done"  # every segment is encoded and on disk
    FINISHED = "finished"  # muxed, verified, post plugins ran
    FAILED = "failed"  # preparing, a chunk (for good) or finishing failed
    MOVE = "move"  # `ute move`: the file's queue changed (sent once per request)


class Action(StrEnum):
    HOLD_CHUNKS = "take its queued chunks off the queue"  # running ones finish
    STOP_CHUNKS = "stop its running chunks"
    CLEAR_CHUNKS = "drop its chunk jobs"
    OFFER_CHUNKS = "serve its source and take its segments back over HTTP (workers without the share)"
    SAMPLE_SOURCE = "read what the verifier needs of the source while the chunks encode, in a helper thread"
    START_FINISHING = "mux, verify and run the post plugins, in a helper thread"
    RECORD_DONE = "record it done; the source goes where --done-action says"
    RECORD_FAILED = "record why it failed"
    RECORD_CANCELLED = "record it cancelled; the source stays"


@dataclass(frozen=True)
class Transition:
    state: FileState
    actions: tuple[Action, ...] = ()


Q, E, P, F = FileState.QUEUED, FileState.ENCODING, FileState.PAUSED, FileState.FINISHING
_DROP_CHUNKS = (Action.STOP_CHUNKS, Action.CLEAR_CHUNKS)
_CANCELLED = Transition(FileState.CANCELLED, (*_DROP_CHUNKS, Action.RECORD_CANCELLED))
_FAILED = Transition(FileState.FAILED, (*_DROP_CHUNKS, Action.RECORD_FAILED))
_HOLD = (Action.HOLD_CHUNKS,)

TABLE: dict[tuple[FileState, Event], Transition] = {
    # The driver's next look queues every chunk without a job.
    (Q, Event.PREPARED): Transition(E, (Action.OFFER_CHUNKS, Action.SAMPLE_SOURCE)),
    (Q, Event.PAUSE): Transition(P),
    (Q, Event.CANCEL): _CANCELLED,
    (Q, Event.NO_ROOM): Transition(Q),
    (Q, Event.FAILED): _FAILED,
    # It waits its turn in the new queue; chunks queued before a restart leave the old one once
    # its plan is ready (the driver keeps a hold until then).
    (Q, Event.MOVE): Transition(Q, _HOLD),
    (E, Event.PAUSE): Transition(P, _HOLD),
    (E, Event.CANCEL): _CANCELLED,
    (E, Event.NO_ROOM): Transition(E, _HOLD),
    (E, Event.CHUNKS_DONE): Transition(F, (Action.START_FINISHING,)),
    (E, Event.FAILED): _FAILED,
    (E, Event.MOVE): Transition(E, _HOLD),  # the driver's next look queues them on the new queue
    # Chunks the monitor requeued, or a restart found without a job, are held back too.
    (P, Event.PAUSE): Transition(P, _HOLD),
    (P, Event.NO_ROOM): Transition(P, _HOLD),
    (P, Event.RESUME): Transition(Q),  # then PREPARED, and the held chunks are queued again
    (P, Event.CANCEL): _CANCELLED,
    (P, Event.FAILED): _FAILED,
    (P, Event.MOVE): Transition(P),  # its chunks are off the queue already; resume queues them
    (F, Event.FINISHED): Transition(FileState.DONE, (Action.RECORD_DONE,)),
    (F, Event.FAILED): _FAILED,
}


def transition(state: FileState, event: Event) -> Transition:
    """Where event leads from state, and what has to be done on the way. An event a state does
    not take changes nothing (a pause while the file is being finished, a late report)."""
    return TABLE.get((state, event), Transition(state))
