"""The sweeper: no run stays ``running`` once its last hop is gone.

Every minute (a schedule on AWS, a timer on the local stack) it looks at each running run's
open superstep. One that made no progress for longer than the lease (a request or a worker
died between a commit and its dispatch, or a hop was lost) gets its hops again, each with
``recheck``: the ones that were alive after all find their slots taken and stop. A superstep
whose tasks all committed but whose closer died is closed here, with the same conditional
write, and a wide superstep's fold that stopped part way goes on from its record
(:mod:`engine.fold`). A superstep whose tasks count their commits is judged by its count (the
time of its last commit) and its fold record: its tasks are listed only once it looks stalled.
A retry or a wait that is due is sent here when the carrier cannot hold a hop
(self-invocation: :mod:`engine.retries`, :mod:`engine.timers`); a task waiting on a child run
is left alone (:mod:`engine.subgraphs`) until its child passes the task's deadline
(:mod:`engine.subgraph_timeouts`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.graph import Graph
from engine.lifecycle import accepts_hops
from engine.owners import weakly
from engine.ports import Audience, Hop, RunRecord, StepRecord, TaskRecord
from engine.reducers import ReducerError
from engine.superstep import Plan, plan_of

if TYPE_CHECKING:
    from engine.protocol import HopProtocol


class Sweeper:
    """The protocol's sweep (:meth:`sweep`), written against the same ports."""

    def __init__(self, protocol: HopProtocol) -> None:
        self.protocol = weakly(protocol)

    def sweep(self, run_id: str) -> int:
        """Re-send the hops of ``run_id``'s open superstep if it made no progress for longer
        than the lease (a request or a worker died between a commit and its dispatch, or a
        hop was lost); returns how many were sent. Every hop goes out with ``recheck``: the
        ones that were alive after all find their slots taken and stop."""
        run = self.protocol.store.get_run(run_id)
        if run.status == "paused":  # nothing in flight (its deadlines: Pauses.swept_deadlines)
            return 0
        if not accepts_hops(run.status) or self.protocol.subgraphs.orphaned(run):
            return 0
        graph = self.protocol.graphs(run.graph_id)
        seq = run.steps
        previous = self.protocol.store.get_step(run_id, seq - 1) if seq else None
        opened = run.created_at if previous is None else previous.ended_at
        state = run.input if previous is None else previous.state
        nodes = (graph.entry,) if previous is None else previous.successors
        sends = () if previous is None else previous.sends
        try:
            planned = plan_of(graph, nodes, state, sends)
        except ReducerError:
            return 0
        if len(planned) <= 1:
            stalled = self.protocol.clock() - opened >= self.protocol.config.lease_s
            if not stalled and not self._may_be_due(graph, list(nodes)):
                return 0
            waiting = self.protocol.subgraphs.waiting(run_id, seq, graph)
            hops = self.protocol._hops(run_id, run.graph_id, seq, graph, planned, skip=waiting)
            hops = self._swept(graph, hops, state, opened, stalled)
            if waiting is not None:  # a child past its deadline: its task's hop times it out
                hops += waiting.hops(run.graph_id, parallel=False)
            if hops:
                self._republish(previous)
                self.protocol.queue.dispatch(hops[0])  # one task: its slot has one hop
            return len(hops)
        return self._sweep_tasks(run, graph, seq, planned, opened, previous, state)

    def _may_be_due(self, graph: Graph, nodes: list[str]) -> bool:
        """A slot that is not stalled may still hold a retry, a wait or a child's deadline
        that is due, when the sweeper is what sends them (self-invocation)."""
        p = self.protocol
        return (p.retries.may_be_due(graph, nodes) or p.timers.may_be_due(graph, nodes)
                or p.subgraphs.deadlines.may_be_due(graph, nodes))  # fmt: skip

    def _swept(self, graph: Graph, hops: list[Hop], state: dict[str, Any], opened: float,
               stalled: bool) -> list[Hop]:  # fmt: skip
        """The sweeper's hops that are due: a wait node's at its time (engine/timers.py),
        a retried task's as its next attempt (engine/retries.py), any other if stalled."""
        waits = [h for h in hops if graph.nodes[h.node].wait is not None]
        others = [h for h in hops if graph.nodes[h.node].wait is None]
        return [*self.protocol.retries.swept(graph, others, stalled=stalled),
                *self.protocol.timers.swept(graph, waits, state, opened)]  # fmt: skip

    def _republish(self, previous: StepRecord | None) -> None:
        """The step before a swept slot may never have been published (its worker died
        before): publish it again first (events are at least once; subscribers dedupe)."""
        if previous is not None:
            self.protocol._publish(previous, None, Audience())

    def _sweep_tasks(self, run: RunRecord, graph: Graph, seq: int, planned: Plan,
                     opened: float, previous: StepRecord | None,
                     state: dict[str, Any]) -> int:  # fmt: skip
        """A superstep of several tasks: its progress is its latest task commit; the hops
        due are the first chunk's and, for a map, those of the window after its commits."""
        if self.protocol._counted_plan(graph, planned):  # its count tells progress cheaply
            swept = self._sweep_counted(run, graph, seq, planned, opened)
            if swept is not None:
                return swept
        tasks = self.protocol.store.list_tasks(run.run_id, seq)
        last = max([opened, *(t.started_at + t.duration_ms / 1000 for t in tasks)])
        stalled = self.protocol.clock() - last >= self.protocol.config.lease_s
        if not stalled and not self._may_be_due(graph, list(planned.sizes)):
            return 0
        if len(tasks) >= len(planned):  # every task committed; the close was lost
            return self._sweep_close(run, graph, seq, tasks)
        done = {(t.node, t.index) for t in tasks}
        due = [
            t for t in self.protocol._due(graph, planned, tasks) if (t.node, t.index) not in done
        ]
        waiting = self.protocol.subgraphs.waiting(run.run_id, seq, graph)
        due = [t for t in due if waiting is None or not waiting(t)]
        hops = [Hop(run.run_id, run.graph_id, seq, t.node, recheck=True, index=t.index,
                    parallel=True) for t in due]  # fmt: skip
        hops = self._swept(graph, hops, state, opened, stalled)
        if waiting is not None:
            hops += waiting.hops(run.graph_id, parallel=True)
        if not tasks:
            self._republish(previous)
        if hops:
            self.protocol.queue.dispatch_batch(hops)
        return len(hops)

    def _sweep_counted(self, run: RunRecord, graph: Graph, seq: int, planned: Plan,
                       opened: float) -> int | None:  # fmt: skip
        """A counted superstep: its progress is its count's latest commit, or, once every
        task counted, its fold's latest page (engine/fold.py), read without listing its
        tasks. ``None``: it looks stalled (or a retry may be due): list them as for any."""
        p = self.protocol
        done, last = p.store.task_progress(run.run_id, seq)
        fold = p.store.get_fold(run.run_id, seq) if done >= len(planned) else None
        last = max(opened, last, fold.updated_at if fold is not None else 0.0)
        if p.clock() - last < p.config.lease_s:
            return None if self._may_be_due(graph, list(planned.sizes)) else 0
        if done < len(planned):
            return None
        first = next(iter(planned))  # the probe of a close that reads no task here
        hop = Hop(run.run_id, run.graph_id, seq, first.node, index=first.index, parallel=True)
        origin = p._origin(hop, graph)
        if origin is not None:  # a fold goes on from its record; any other close is read
            p._fan_in(graph, hop, origin, f"sweeper:{run.run_id}:{seq}")
        return 1

    def _sweep_close(self, run: RunRecord, graph: Graph, seq: int, tasks: list[TaskRecord]) -> int:
        """Close a superstep whose tasks all committed but whose closer died: the close is
        the same conditional write whoever makes it."""
        last = tasks[-1]
        hop = Hop(run.run_id, run.graph_id, seq, last.node, index=last.index, parallel=True)
        origin = self.protocol._origin(hop, graph)
        if origin is not None:
            self.protocol._fan_in(graph, hop, origin, f"sweeper:{run.run_id}:{seq}")
        return 1
