"""Timers: a node that waits for a time, as a delayed hop, never as a sleeping worker.

A node declares ``{"wait": {"seconds": 3600}}`` (counted from when its superstep opened: the
close of the superstep before it) or ``{"wait": {"until": "deadline"}}`` (an ISO 8601 time,
or epoch seconds, in the state key ``deadline``), and no tool. The run stays ``running``
while it waits; ``GET /runs/{id}`` shows when it wakes (``wakes_at``).

The time it wakes is a function of the run's own records (the state and the time its slot
opened), so every copy of its hop agrees on it and nothing is written to wait::

    hop of the wait node arrives (first dispatch, a re-sent copy, or a held one)
      before its time -> dispatched again, held until then (SQS DelaySeconds, at most
                         900 s: a longer wait is held again each time it comes), "waiting"
      at its time     -> its task runs as a task with no updates, and the run goes on by
                         the node's edges

The sweeper leaves a waiting slot alone until its time (plus the lease, in which its held
hop should have come): a lost hop is re-sent then. With self-invocation, which cannot hold
a hop, the first hop stops at "waiting" and the sweeper sends it at its time (within a
minute of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from engine.graph import Graph
from engine.ports import Clock, Hop, RunRecord, RunStore, StepQueue
from engine.wait_spec import WaitError, wakes_at

EARLY_TOLERANCE_S = 1.0
"""A hop this close to its time runs (SQS holds messages for whole seconds)."""

TimerOutcome = Literal["waiting"]


class Timers:
    """The protocol's timer hooks (:class:`engine.protocol.HopProtocol` owns one)."""

    def __init__(
        self, queue: StepQueue, clock: Clock, *, lease_s: float, sweeper_delays: bool = False
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.lease_s = lease_s
        self.sweeper_delays = sweeper_delays

    def before_run(
        self, graph: Graph, hop: Hop, state: Mapping[str, Any], opened_at: float
    ) -> TimerOutcome | None:
        """A wait node's hop before its time: held again until then (``"waiting"``);
        ``None`` to go on (any other node, a wait that is due, or one whose time cannot be
        read: its task fails with why)."""
        spec = graph.nodes[hop.node].wait
        if spec is None:
            return None
        try:
            due = wakes_at(spec, state, opened_at)
        except WaitError:
            return None
        early = due - self.clock()
        if early <= EARLY_TOLERANCE_S:
            return None
        if not self.sweeper_delays:
            self.queue.dispatch(replace(hop, recheck=False, delay_s=early))
        return "waiting"

    def may_be_due(self, graph: Graph, nodes: list[str]) -> bool:
        """Whether the sweeper should look at a slot that is not stalled: only when it sends
        the waits that are due (self-invocation), for a slot with a wait node."""
        return self.sweeper_delays and any(graph.nodes[n].wait for n in nodes)

    def swept(
        self, graph: Graph, hops: list[Hop], state: Mapping[str, Any], opened_at: float
    ) -> list[Hop]:
        """The sweeper's hops of wait nodes that are due: at their time (self-invocation),
        or once the lease after it passed (their held hop should have come by then)."""
        grace = 0.0 if self.sweeper_delays else self.lease_s
        now = self.clock()
        due: list[Hop] = []
        for hop in hops:
            spec = graph.nodes[hop.node].wait
            try:
                wakes = wakes_at(spec, state, opened_at) if spec is not None else opened_at
            except WaitError:
                wakes = opened_at  # its task fails when it runs: send it
            if now >= wakes + grace:
                due.append(hop)
        return due


def run_wakes_at(store: RunStore, graph: Graph, run: RunRecord) -> float | None:
    """When a running run whose next task is a wait node wakes (``GET /runs/{id}``);
    ``None`` for any other run. One step read, only for such a run."""
    node = graph.nodes.get(run.node) if run.status == "running" and run.node else None
    if node is None or node.wait is None:
        return None
    previous = store.get_step(run.run_id, run.steps - 1) if run.steps else None
    opened = previous.ended_at if previous is not None else run.created_at
    try:
        return wakes_at(node.wait, run.state, opened)
    except WaitError:
        return None
