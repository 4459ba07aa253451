"""The run service: graphs, starting runs, and the exactly-once step protocol over ports.

Processing one hop (one step of one run)::

    worker A (delivery d1)                         store slot RUN#r/STEP#n
    ---------------------------------------------------------------------------------
    [recheck?] read slot n ------------------------> taken? -> after_conflict (below)
    slot check: read slot n-1 (seq 0: the run) ----> stray? -> drop, change nothing
         (in the background while the tool runs when the state travelled inline;
          first, as the state's source, when it did not)
    run the tool (at least once per step)
    wait for the slot check ------------------------> stray? -> drop, change nothing
         (1) crash here: nothing written; the hop is redelivered, runs the tool again
    commit slot n, conditional on "slot empty" -----> exactly one writer wins
         (2) crash here: the redelivered hop (same delivery id d1) finds slot n taken by
             d1 and re-dispatches the successor it never sent
    publish events (best effort, never fails the step; before the dispatch, so that
         a subscriber sees one run's events in step order)
    dispatch hop n+1 (or nothing: the commit ended the run)
         (3) crash here: as (2); the successor may now exist twice, and the copy that
             loses its commit is dropped
    acknowledge

    after_conflict: slot n taken by *this* delivery -> re-dispatch the successor (recovery);
                    taken by another delivery   -> drop: that worker owns the follow-up,
                    and if it crashes, its own redelivery recovers it.

The slot check is what lets the commit stay one conditional write and still require a live
run at that slot: a hop is stray (forged, or left over from a finished run) unless slot n-1
is committed with its run still running and routed to the hop's node (for slot 0: the run
exists, runs, is of the hop's graph and the node is its entry). Once that holds, the run can
only end or move on by writing slot n, which makes this hop's commit lose. Remove the check
and ``tests/unit/test_service.py``'s stray-hop tests go red.

Duplicates of a hop (same delivery id) that race re-dispatch at most one extra successor,
which carries a different delivery id and is dropped when it loses: duplicates die out after
one step instead of shadowing the run to its end.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal, Protocol

from engine.errors import (
    ConflictError,
    GraphNotFound,
    GraphValidationError,
    InvalidInputError,
    Problem,
    RunNotFound,
    StateTooLargeError,
    StepConflict,
)
from engine.events import run_event, run_status_event, step_event
from engine.graph import Graph
from engine.idempotency import check_same_request, input_digest
from engine.json_rules import check as check_json
from engine.ports import (
    Clock,
    GraphRecord,
    Hop,
    Notifier,
    NullNotifier,
    RunEnd,
    RunRecord,
    RunStore,
    StepQueue,
    StepRecord,
)
from engine.step import Limits, StepOutcome, advance, state_size
from engine.tools import ToolContext, Toolkit
from engine.validation import MAX_STEPS_CEILING, build_graph

HopResult = Literal["committed", "finished", "duplicate", "recovered", "stale"]


@cache
def _slot_checks() -> ThreadPoolExecutor:
    """Threads that read a hop's slot while its tool runs (one read each, so a few suffice:
    a worker applies a handful of hops at a time)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="slot-check")


class Ids(Protocol):
    def graph_id(self) -> str: ...

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str: ...


def declared_writes(tools: Toolkit) -> dict[str, list[str]]:
    """The state keys each tool declares it writes; placeholders such as ``<settings.key>``
    name a key only a node's settings know, so they are left out."""
    return {
        name: [key for key in tools.get(name).writes if not key.startswith("<")]
        for name in tools.names()
    }


def durable_problems(graph: Graph) -> list[Problem]:
    """What the durable protocol cannot run yet: parallel work runs in process only."""
    where = [f"edges.{s}" for s, t in graph.edges.items() if len(t) > 1]
    where += [
        f"branches.{s}"
        for s, b in graph.branches.items()
        if any(len(c.targets) > 1 for c in b.cases) or len(b.default or ()) > 1
    ]
    where += [f"nodes.{n.id}.map" for n in graph.nodes.values() if n.map is not None]
    where += [f"joins.{j}" for j in graph.joins]  # fmt: skip
    message = (
        "parallel work (a fan-out, map or join) runs in process only for now: "
        "`hopgraph run FILE --local`; the service runs graphs that go one node at a time"
    )
    return [Problem(loc, message) for loc in where]


class RandomIds:
    """Random ids; a run started with an idempotency key gets an id derived from it, so
    the store's "create unless exists" makes the start idempotent."""

    def graph_id(self) -> str:
        return "g_" + uuid.uuid4().hex[:20]

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return "r_" + uuid.uuid4().hex[:24]
        digest = hashlib.sha256(f"{graph_id}\0{idempotency_key}".encode()).hexdigest()
        return "r_" + digest[:24]


def content_graph_id(definition: dict[str, Any], owner: str | None) -> str:
    """A graph id derived from a canonical definition and its owner (owners never share)."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{owner or ''}\0{canonical}".encode()).hexdigest()
    return "g_" + digest[:20]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    default_max_steps: int = 100
    state_limit_bytes: int = 350_000
    inline_state_bytes: int = 60_000
    """States up to this size travel inside the hop, saving the worker a read."""


class RunService:
    """Everything a handler does with graphs and runs, written against the ports."""

    def __init__(
        self,
        store: RunStore,
        queue: StepQueue,
        tools: Toolkit,
        *,
        notifier: Notifier | None = None,
        clock: Clock = time.time,
        ids: Ids | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.tools = tools
        self.notifier = notifier or NullNotifier()
        self.clock = clock
        self.ids = ids or RandomIds()
        self.config = config or EngineConfig()
        self._graphs: OrderedDict[str, Graph] = OrderedDict()

    # -- graphs ----------------------------------------------------------------------------
    def create_graph(self, doc: Any, owner: str | None = None) -> tuple[GraphRecord, Graph]:
        """Validate a definition in any dialect and save its canonical form."""
        graph = self._validated(doc)
        record = GraphRecord(self.ids.graph_id(), graph.name, graph.to_dict(), self.clock(), owner)
        self.store.put_graph(record)
        self._remember(record.graph_id, graph)
        return record, graph

    def find_or_create_graph(
        self, doc: Any, owner: str | None = None
    ) -> tuple[GraphRecord, Graph, bool]:
        """The owner's graph with this canonical content: created (True) unless it exists.

        Its id is derived from the content, so "create unless exists" is one conditional
        write (as for a run's idempotency key) and finding it needs no index or scan."""
        graph = self._validated(doc)
        definition = graph.to_dict()
        graph_id = content_graph_id(definition, owner)
        record = GraphRecord(graph_id, graph.name, definition, self.clock(), owner)
        created = True
        try:
            self.store.put_graph(record)
        except ConflictError:
            record, created = self.store.get_graph(graph_id), False
            if record.definition != definition or record.owner != owner:  # a hash collision
                raise ConflictError(f"graph {graph_id!r} exists with other content") from None
        self._remember(graph_id, graph)
        return record, graph, created

    def _validated(self, doc: Any) -> Graph:
        """``doc`` checked against the registered tools (and the keys they declare writing),
        and runnable by this service."""
        graph = build_graph(doc, set(self.tools.names()), declared_writes(self.tools))
        problems = durable_problems(graph)
        if problems:
            raise GraphValidationError(problems)
        return graph

    def graph(self, graph_id: str) -> Graph:
        """The validated graph; cached, since graphs never change once created."""
        graph = self._graphs.get(graph_id)
        if graph is None:
            graph = build_graph(self.store.get_graph(graph_id).definition)
            self._remember(graph_id, graph)
        return graph

    def _remember(self, graph_id: str, graph: Graph) -> None:
        self._graphs[graph_id] = graph
        if len(self._graphs) > 256:
            self._graphs.popitem(last=False)

    # -- runs ------------------------------------------------------------------------------
    def start_run(
        self,
        graph_id: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        max_steps: int | None = None,
        owner: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Create a run and dispatch its first hop; returns (run, created).

        The same idempotency key with the same input and step limit returns the same run;
        with another, IdempotencyConflict (nothing is started). A run whose first step is
        not committed yet gets its first hop dispatched again, so a start that failed
        halfway is finished by the retry."""
        graph = self.graph(graph_id)
        state = self._checked_input(input)
        limit = self._max_steps(max_steps, graph)
        now = self.clock()
        run_id = self.ids.run_id(graph_id, idempotency_key)
        header = RunRecord(
            run_id, graph_id, "running", state, limit, now, now,
            node=graph.entry, idempotency_key=idempotency_key, owner=owner,
            input_digest=input_digest(state) if idempotency_key is not None else None,
        )  # fmt: skip
        run, created = self.store.create_run(header)
        if not created:
            check_same_request(run, header)
        if run.status == "running" and run.steps == 0:
            self.queue.dispatch(self._hop(run, 0, graph.entry, run.input, recheck=not created))
        if created:
            self.notifier.publish(run_id, [run_event(run_id, "running", now, steps=0)])
        return run, created

    def _checked_input(self, input: Any) -> dict[str, Any]:
        if input is None:
            return {}
        if not isinstance(input, dict):
            raise InvalidInputError("input must be a JSON object (the run's initial state)")
        # The transports apply the rule at the door; in-process callers meet it here.
        check_json(input, ("input",))
        size = state_size(input)
        if size > self.config.state_limit_bytes:
            raise StateTooLargeError(size, self.config.state_limit_bytes)
        return input

    def _max_steps(self, requested: int | None, graph: Graph) -> int:
        # `is None`, not `or`: an explicit 0 (or False) is a client's mistake, not "default".
        limit = requested if requested is not None else graph.max_steps
        limit = limit if limit is not None else self.config.default_max_steps
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not (0 < limit <= MAX_STEPS_CEILING)
        ):
            raise InvalidInputError(f"max_steps must be an integer from 1 to {MAX_STEPS_CEILING}")
        return limit

    def cancel_run(self, run_id: str, reason: str = "cancelled by request") -> RunRecord:
        """Cancel a running run; ConflictError if it is already final."""
        run = self.store.cancel_run(run_id, self.clock(), reason)
        self.notifier.publish(run_id, [run_status_event(run, self.clock())])
        return run

    # -- the step protocol -----------------------------------------------------------------
    def process_hop(self, hop: Hop, delivery_id: str, attempt: int = 1) -> HopResult:
        """Apply one hop: run the tool, commit its step exactly once, route onwards."""
        graph = self._graph_of(hop)
        if graph is None:
            return "stale"
        if hop.recheck or attempt > 1:
            taken = self.store.get_step(hop.run_id, hop.seq)
            if taken is not None:
                return self._after_conflict(hop, taken, delivery_id)
        origin, state = self._start_from(hop)
        if state is None:
            return "stale"
        ctx = ToolContext(hop.run_id, hop.node, hop.seq, attempt)
        limits = Limits(hop.max_steps, self.config.state_limit_bytes)
        outcome = advance(graph, self.tools, hop.node, state, ctx, limits, self.clock())
        if origin is not None and origin.result() is None:
            return "stale"  # a stray or forged hop: its run is not at this slot
        step = replace(outcome.step, committed_by=delivery_id)
        try:
            self.store.commit_step(step, outcome.end)
        except StepConflict:
            taken = self.store.get_step(hop.run_id, hop.seq)
            if taken is None:  # the run was already final: nothing more to do for it
                return "stale"
            return self._after_conflict(hop, taken, delivery_id)
        self._follow_up(hop, step, outcome)
        return "finished" if outcome.end is not None else "committed"

    def _start_from(
        self, hop: Hop
    ) -> tuple[Future[dict[str, Any] | None] | None, dict[str, Any] | None]:
        """The state ``hop`` starts from, and the pending check that its run is at its slot.

        A state that travelled inline lets the tool start at once while the slot check reads
        the store in the background (off the critical path); otherwise the check's read is
        also where the state comes from. ``(None, None)``: the hop is stray."""
        if hop.state is None:
            return None, self._slot_origin(hop)
        return _slot_checks().submit(self._slot_origin, hop), hop.state

    def _slot_origin(self, hop: Hop) -> dict[str, Any] | None:
        """The committed state slot ``hop.seq`` follows on, or ``None`` if the hop's run is not
        at that slot: unknown, final, of another graph, or not routed to ``hop.node``.

        This is what makes a commit require a live run at its slot while the commit itself
        stays one conditional write: once slot n-1 is committed with the run still running,
        the run can only end or move on by writing slot n (a step, a cancel, a dead letter),
        and that write makes this hop's conditional commit of slot n lose."""
        if hop.seq == 0:
            try:
                run = self.store.get_run(hop.run_id)
            except RunNotFound:
                return None
            entry = self.graph(run.graph_id).entry if run.graph_id == hop.graph_id else None
            live = run.status == "running" and hop.node == entry
            return run.input if live else None
        previous = self.store.get_step(hop.run_id, hop.seq - 1)
        if previous is None or previous.run_status != "running":
            return None
        return previous.state if previous.next_node == hop.node else None

    def _after_conflict(self, hop: Hop, taken: StepRecord, delivery_id: str) -> HopResult:
        if taken.committed_by != delivery_id or taken.status == "cancelled":
            return "duplicate"
        # Our own earlier attempt committed and then died before it published or dispatched:
        # finish its work (events are at least once; subscribers dedupe by seq).
        if taken.run_status != "running":
            self._publish(taken, RunEnd(taken.run_status, self.store.get_run(hop.run_id).error))
            return "recovered"
        self._publish(taken, None)
        self._dispatch_successor(hop, taken, recheck=True)
        return "recovered"

    def _follow_up(self, hop: Hop, step: StepRecord, outcome: StepOutcome) -> None:
        self._publish(step, outcome.end)
        if outcome.end is None:
            self._dispatch_successor(hop, step, recheck=False)

    def _dispatch_successor(self, hop: Hop, step: StepRecord, *, recheck: bool) -> None:
        assert step.next_node is not None
        successor = replace(hop, seq=hop.seq + 1, node=step.next_node, recheck=recheck)
        self.queue.dispatch(self._inline(successor, step.state))

    def _hop(self, run: RunRecord, seq: int, node: str, state: dict[str, Any], *, recheck: bool
             ) -> Hop:  # fmt: skip
        hop = Hop(run.run_id, run.graph_id, seq, node, run.max_steps, recheck=recheck)
        return self._inline(hop, state)

    def _inline(self, hop: Hop, state: dict[str, Any]) -> Hop:
        if state_size(state) <= self.config.inline_state_bytes:
            return replace(hop, state=state)
        return replace(hop, state=None)

    def _publish(self, step: StepRecord, end: RunEnd | None) -> None:
        now = self.clock()
        events = [step_event(step, now)]
        if end is not None:
            state = step.state if end.status == "completed" else None
            events.append(
                run_event(step.run_id, end.status, now, state=state, reason=end.error,
                          steps=step.seq + 1)
            )  # fmt: skip
        try:
            self.notifier.publish(step.run_id, events)
        except Exception:  # progress is best effort: it never fails a committed step
            return

    def fail_hop(self, hop: Hop, reason: str) -> bool:
        """Mark the run failed because its hop is being dead-lettered. True if this call
        ended the run; False if it changed nothing: the run is not at the hop's slot (unknown,
        already final, moved on) or the slot was taken meanwhile."""
        graph = self._graph_of(hop)
        state = self._slot_origin(hop) if graph is not None else None
        if graph is None or state is None:
            return False
        step = StepRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.node, tool=graph.nodes[hop.node].tool,
            status="failed", updates={}, state=state, next_node=None,
            started_at=self.clock(), duration_ms=0.0, error=reason, run_status="failed",
        )  # fmt: skip
        try:
            self.store.commit_step(step, RunEnd("failed", reason))
        except (StepConflict, ConflictError):
            return False
        self._publish(step, RunEnd("failed", reason))
        return True

    def _graph_of(self, hop: Hop) -> Graph | None:
        """The hop's graph if it has the hop's node; ``None`` for a hop no run could send."""
        try:
            graph = self.graph(hop.graph_id)
        except GraphNotFound:
            return None
        return graph if hop.node in graph.nodes else None
