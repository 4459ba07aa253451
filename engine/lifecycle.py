"""The run lifecycle: every status a run can have, which of them accept hops, and the
transitions between them. Nothing else in the engine decides these.

::

    running --(a superstep routes to END)-------------------------> completed
       |  \\--(tool error, step limit, state too large, dead letter)--> failed
       |\\----(cancel)------------------------------------------------> cancelled
       \\-----(a task waits for input, nothing else can proceed)------> paused
    paused --(an answer: resume, or its deadline passed)-----------> running
       \\-----(cancel)------------------------------------------------> cancelled
    failed --(redrive: the failed superstep again, a new attempt)---> running

A run is created ``running``; the three other statuses are final: no hop runs in them. A
failed run alone may be taken back to ``running`` by a redrive (:mod:`engine.history`), a
command of its caller's, never by a hop. Every transition is made by
one store primitive, :meth:`engine.ports.RunStore.commit_step` with a :class:`RunEnd`: it
appends the step that ends the run into the run's next free slot and moves the run header, in
one conditional write, so that a transition and the log entry that explains it are never
apart. The worker's closes, the API's cancel, the dead-letter consumer and a redrive all use
it (a redrive's :class:`RunEnd` names ``failed`` as the status it moves the run from).

A pause is not a step: ``running <-> paused`` moves the header alone, atomically with the
pause record that explains it (:meth:`engine.ports.RunStore.commit_pause`, ``hold_run``,
``answer_pause``; :mod:`engine.pauses`). A paused run accepts no hop but the one its answer
sends (the header is ``running`` again by then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RunStatus = Literal["running", "paused", "completed", "failed", "cancelled"]

ACCEPTS_HOPS: frozenset[str] = frozenset({"running", "paused"})
"""Statuses in which a hop may run a task and commit: any other status makes it stale. A
paused run's hops find their tasks committed or waiting (engine/pauses.py); the hop that
holds a deadline must pass the slot check to answer it as timed out."""

TRANSITIONS: dict[str, frozenset[str]] = {
    "running": frozenset({"completed", "failed", "cancelled", "paused"}),
    "paused": frozenset({"running", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset({"running"}),
    "cancelled": frozenset(),
}
"""From each status, the statuses a run may move to."""

FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
"""Statuses in which the run has ended: no hop runs, and cancel is refused."""

EDITABLE_STATUSES: frozenset[str] = frozenset({"paused"})
"""Statuses in which a caller may edit a run's state (``POST /runs/{id}/state``): a run
waiting for input. Nothing else: a running run's next superstep already read its state."""


class IllegalTransition(ValueError):
    """A run was asked to move between two statuses the lifecycle does not link."""


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended (the status it moves to), written atomically with its last step."""

    status: RunStatus
    error: str | None = None
    from_status: RunStatus = "running"
    """The status the run must be in for the transition to happen: the stores make it the
    condition of the write (a redrive moves a ``failed`` run; everything else a running one)."""
    max_steps: int | None = None
    """A new step limit for the run's header, set in the same write (a redrive's)."""


def accepts_hops(status: str) -> bool:
    return status in ACCEPTS_HOPS


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def accepts_edits(status: str) -> bool:
    return status in EDITABLE_STATUSES


def check_transition(current: str, end: RunEnd) -> None:
    """Raises :class:`IllegalTransition` unless a run ``current`` may move to ``end``, from
    the status the transition expects."""
    if current != end.from_status or end.status not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"a {current} run cannot become {end.status}")
