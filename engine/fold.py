"""The close of a wide superstep, as a fold over several hops.

A superstep closes once all its tasks committed: its closer merges their updates, in merge
order, and commits the step record. Reading every task record in one invocation costs what
the superstep is wide (29 s for 10,000 tasks on a loaded laptop; 100,000 would pass any
worker's timeout). Above ``fold_above`` tasks the close is a fold instead: each hop reads one
page of task records (in slot order, which is merge order for the supersteps folded:
:func:`folds_in_order`), merges it into what the pages before it left, and commits that, with
the cursor of the next page, as the superstep's fold record, conditional on the cursor it
read; then it sends a *fold hop* to go on. The last page closes through the protocol's own
commit (``_commit_close``), so that a folded close writes what a single read would have::

    closer (the task that found every task counted), then fold hops     store
    ---------------------------------------------------------------------------------
    read FOLD#k (none yet: start from the state before superstep k)
    read one page of TASK#k#... after its cursor (``fold_page`` records)
    merge the page (reducers, in merge order; conflicts, failures, routes, sends)
    more pages -> commit FOLD#k (merged so far, next cursor, when), conditional on
                  "FOLD#k is still at the cursor read" ---------> exactly one copy wins
         (F1) crash here: nothing written; the redelivery (or the sweeper) folds the page
              again from the same record
         a copy that loses (its cursor moved) drops: the winner sends the next fold hop
    dispatch the fold hop (run, superstep: nothing else; the rest comes from records)
         (F2) crash here: the redelivery reads FOLD#k at its new cursor and folds on; with
              no redelivery, the sweeper finds FOLD#k older than the lease and folds on
    last page -> close (route, plan) and commit STEP#k, conditional on "slot empty"
         (F3) crash here: as (2) of engine.protocol: the redelivery finds STEP#k its own and
              sends what it never sent; the sweeper does the same for a request that died

A fold hop is as untrusted as any hop: it names a run and a superstep, and its worker reads
the run's graph from the run, the task that started the fold from the fold record, and the
superstep's origin through the slot check. A duplicate or forged fold hop folds at most the
page the record says is next, and its commit loses to any copy that got there first; once
STEP#k is written, every fold hop of superstep k is stale.

Large accumulators (a map's results merged into the state) keep to the store's item limit
as a step's state does: the DynamoDB store puts their large values in blobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import GraphNotFound, RunNotFound, StepConflict
from engine.graph import END, Graph
from engine.lifecycle import accepts_hops
from engine.owners import weakly
from engine.ports import FoldRecord, Hop, RunStore, StepRecord, TaskRecord
from engine.step_records import MAX_TASK_SUMMARIES
from engine.superstep import (
    Closed,
    Merging,
    Plan,
    Task,
    TaskResult,
    close_merging,
    merge_in,
)
from engine.tools import Send

if TYPE_CHECKING:
    from engine.protocol import HopProtocol, HopResult, Origin

FOLD_ABOVE = 4096
"""Default of ``ProtocolConfig.fold_above``: a superstep of more tasks closes by a fold. Its
single-read close reads this many records in one invocation: four to eight DynamoDB query
pages of 1 MB and about 12 s on a loaded laptop (3 ms a record were measured at 10,000),
inside the worker's 30 s with room to spare; a fold costs one write and one hop a page,
which a superstep this wide does not notice."""

FOLD_PAGE = 1024
"""Default of ``ProtocolConfig.fold_page``: task records a fold hop reads. At about 0.5 KB a
record that is one query page of DynamoDB's 1 MB, and about 3 s on a loaded laptop."""


def folds_in_order(planned: Plan) -> bool:
    """Whether slot order (:meth:`~engine.ports.RunStore.list_tasks_page`) is merge order
    (:func:`engine.superstep.merge_key`) for ``planned``: at most one node has tasks with an
    index (a map's items, or the items sent), and items are not sent beside a map. A wider
    mix (two maps side by side) closes by a single read, as before."""
    mapped = {node for node, size in planned.sizes.items() if size is not None}
    sent = {send.node for send in planned.sends}
    return len(mapped | sent) <= 1 and not (mapped and sent)


def result_of(task: TaskRecord) -> TaskResult:
    """The result a task record stands for, as the fan-in reads it."""
    sends = tuple(Send.from_dict(s) for s in task.sends)
    return TaskResult(Task(task.node, task.index), task.tool, task.updates, task.targets,
                      task.duration_ms, task.error, sends)  # fmt: skip


@dataclass(slots=True)
class Folded:
    """A superstep's task records folded so far: merged (:class:`Merging`), and what its
    step record says of them (tools, time, keys written, the summaries it keeps)."""

    merging: Merging
    tools: set[str] = field(default_factory=set)
    duration_ms: float = 0.0
    written: set[str] = field(default_factory=set)
    started: float | None = None
    kept: list[tuple[bool, str, int, dict[str, Any]]] = field(default_factory=list)
    """At most ``MAX_TASK_SUMMARIES`` summaries, failed first, each with its sort key."""
    count: int = 0

    def add(self, graph: Graph, tasks: list[TaskRecord]) -> None:
        """Fold the next page of task records (in merge order)."""
        results = [result_of(t) for t in tasks]
        merge_in(graph, self.merging, results)
        for task in tasks:  # one by one, in order: the same sums as one read's
            self.tools.add(task.tool)
            self.duration_ms += task.duration_ms
            self.written.update(task.updates)
            first = self.started
            self.started = task.started_at if first is None else min(first, task.started_at)
        keyed = [(t.status != "failed", t.node, t.index or 0, t.summary()) for t in tasks]
        self.kept = sorted([*self.kept, *keyed], key=lambda k: k[:3])[:MAX_TASK_SUMMARIES]
        self.count += len(tasks)

    # -- as a fold record keeps it -------------------------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        """JSON of everything but the merged state (kept apart: a store may put its large
        values in blobs)."""
        m = self.merging
        return {
            "writers": {k: [t.node, t.index] for k, t in m.writers.items()},
            "failed": m.failed, "error": m.error, "targets": sorted(m.targets),
            "ran": sorted(m.ran), "sends": [s.to_dict() for s in m.sends],
            "tools": sorted(self.tools), "duration_ms": self.duration_ms,
            "written": sorted(self.written), "started": self.started,
            "kept": [list(k) for k in self.kept], "count": self.count,
        }  # fmt: skip

    @classmethod
    def of(cls, record: FoldRecord) -> Folded:
        doc = record.folded
        merging = Merging(
            dict(record.state),
            writers={k: Task(node, index) for k, (node, index) in doc["writers"].items()},
            failed=doc["failed"], error=doc["error"], targets=set(doc["targets"]),
            ran=set(doc["ran"]), sends=[Send.from_dict(s) for s in doc["sends"]],
        )  # fmt: skip
        kept = [(bool(k[0]), str(k[1]), int(k[2]), dict(k[3])) for k in doc["kept"]]
        return cls(merging, set(doc["tools"]), float(doc["duration_ms"]), set(doc["written"]),
                   doc["started"], kept, int(doc["count"]))  # fmt: skip

    # -- the close -------------------------------------------------------------------------------
    def record(self, hop: Hop, origin: Origin, closed: Closed, delivery_id: str) -> StepRecord:
        """The step record of the closed superstep: what the single-read close writes
        (:func:`engine.step_records.close_record` for a superstep of task records)."""
        kept = closed.state is origin.state
        updates = {} if kept else {k: closed.state[k] for k in self.written if k in closed.state}
        status = closed.end.status if closed.end is not None else "running"
        nodes = closed.next_nodes
        step_failed = self.merging.failed is not None or (status == "failed" and not nodes)
        summaries = sorted(self.kept, key=lambda k: (k[1], k[2]))
        return StepRecord(
            run_id=hop.run_id, seq=hop.seq, node=", ".join(sorted(self.merging.ran)) or hop.node,
            tool=", ".join(sorted(self.tools)), status="failed" if step_failed else "ok",
            updates=updates, state=closed.state,
            next_node=END if status == "completed" else None,
            started_at=self.started or 0.0, duration_ms=self.duration_ms,
            error=closed.end.error if closed.end is not None else None, attempt=1,
            committed_by=delivery_id, run_status=status, next_nodes=nodes,
            joins={k: sorted(v) for k, v in closed.joins.items()},
            tasks=tuple(k[3] for k in summaries), graph_id=origin.graph_id,
            max_steps=origin.max_steps, breakpoints=origin.breakpoints,
            tasks_total=self.count if self.count > MAX_TASK_SUMMARIES else 0,
            sends=tuple(s.to_dict() for s in closed.sends), deferred=closed.deferred,
        )  # fmt: skip


class Folds:
    """The protocol's fold hooks (:class:`engine.protocol.HopProtocol` owns one): the fan-in's
    (:meth:`close`), a fold hop's (:meth:`hop`), and the sweeper's, which is :meth:`close`
    too."""

    def __init__(self, protocol: HopProtocol) -> None:
        self.protocol = weakly(protocol)

    def wide(self, planned: Plan) -> bool:
        """Whether the superstep of ``planned`` closes by a fold."""
        return len(planned) > self.protocol.config.fold_above and folds_in_order(planned)

    def close(self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str) -> HopResult:
        """Every task of a wide superstep committed (its count says so): fold the next page,
        from the fold record if a fold started (a closer's copy, or the sweeper, goes on from
        where the record is)."""
        previous = self._store.get_fold(hop.run_id, hop.seq)
        return self._fold(graph, hop, origin, delivery_id, previous)

    def hop(self, hop: Hop, delivery_id: str) -> HopResult:
        """A fold hop: go on folding superstep ``hop.seq`` of ``hop.run_id``, all else from
        the records (the run's graph, the fold record's task for the slot check)."""
        try:
            run = self._store.get_run(hop.run_id)
            graph = self.protocol.graphs(run.graph_id)
        except (RunNotFound, GraphNotFound):
            return "stale"
        fold = self._store.get_fold(hop.run_id, hop.seq)
        if not accepts_hops(run.status) or fold is None or fold.node not in graph.nodes:
            return "stale"
        probe = Hop(run.run_id, run.graph_id, hop.seq, fold.node, index=fold.index, parallel=True)
        origin = self.protocol._origin(probe, graph)
        if origin is None:  # closed: by this very delivery, maybe, which died after its commit
            taken = self._store.get_step(hop.run_id, hop.seq)
            if taken is None or taken.committed_by != delivery_id:
                return "stale"
            return self.protocol._after_conflict(graph, probe, taken, delivery_id)
        if not self.wide(origin.planned):
            return "stale"
        return self._fold(graph, probe, origin, delivery_id, fold)

    def _fold(self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str,
              previous: FoldRecord | None) -> HopResult:  # fmt: skip
        after = previous.cursor if previous is not None else None
        config = self.protocol.config
        page = self._store.list_tasks_page(hop.run_id, hop.seq, after, config.fold_page)
        folded = Folded.of(previous) if previous is not None else Folded(Merging(origin.state))
        folded.add(graph, page.items)
        if page.cursor is None:
            return self._close(graph, hop, origin, folded, delivery_id)
        record = FoldRecord(
            run_id=hop.run_id, seq=hop.seq, cursor=page.cursor, state=folded.merging.state,
            folded=folded.to_doc(), node=hop.node, index=hop.index,
            pages=previous.pages + 1 if previous is not None else 1,
            committed_by=delivery_id, updated_at=self.protocol.clock(),
        )  # fmt: skip
        try:
            self._store.commit_fold(record, after)
        except StepConflict:
            return "duplicate"  # another copy folded this page: it sends the next fold hop
        self.protocol.queue.dispatch(Hop(hop.run_id, origin.graph_id, hop.seq, hop.node,
                                         index=hop.index, parallel=True, fold=True))  # fmt: skip
        return "folded"

    def _close(self, graph: Graph, hop: Hop, origin: Origin, folded: Folded,
               delivery_id: str) -> HopResult:  # fmt: skip
        """The last page: close as the single-read close does, through the same commit."""
        if folded.count < len(origin.planned):  # never, once every task was counted
            return "stale"
        p = self.protocol
        closed = close_merging(
            graph, origin.state, origin.joins, folded.merging, hop.seq, origin.max_steps,
            p.config.state_limit_bytes, origin.deferred,
        )  # fmt: skip
        closed, planned = p._planned(graph, closed)
        step = folded.record(hop, origin, closed, delivery_id)
        return p._commit_close(graph, hop, step, closed.end, delivery_id, origin.audience,
                               planned)  # fmt: skip

    @property
    def _store(self) -> RunStore:
        return self.protocol.store
