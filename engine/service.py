"""The run service: graphs, starting runs, and the commands on them, over the ports.

The run protocol itself (how a hop is checked, run, committed, closed and routed on; the
outbox and the sweeper) is :mod:`engine.protocol`; the run lifecycle is
:mod:`engine.lifecycle`; the commands a caller makes on a run (cancel) are
:mod:`engine.commands`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from engine.commands import cancel_run
from engine.errors import (
    ConflictError,
    GraphNotFound,
    InvalidInputError,
    StateTooLargeError,
)
from engine.events import run_event, run_status_event
from engine.fold import FOLD_ABOVE, FOLD_PAGE
from engine.graph import Graph
from engine.idempotency import check_same_request, input_digest
from engine.interrupt_spec import NO_BREAKPOINTS, Breakpoints, check_breakpoints
from engine.json_rules import check as check_json
from engine.map_quota import check_map_width
from engine.ports import (
    Audience,
    Clock,
    GraphRecord,
    Hop,
    Notifier,
    NullNotifier,
    RunRecord,
    RunStore,
    StepQueue,
)
from engine.protocol import (
    COUNTED_FAN_IN_ABOVE,
    LEASE_SECONDS,
    MAP_WINDOW,
    HopProtocol,
    HopResult,
    ProtocolConfig,
)
from engine.reducers import ReducerError
from engine.subgraphs import resolve_subgraphs
from engine.superstep import plan_of, state_size
from engine.tools import Toolkit
from engine.validation import MAX_STEPS_CEILING, build_graph


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
    state_limit_bytes: int | None = 350_000
    counted_fan_in_above: int = COUNTED_FAN_IN_ABOVE
    """Fan-in readers above which a superstep counts its tasks (engine/protocol.py)."""
    map_window: int = MAP_WINDOW
    """A map's items in flight at once; a request dispatches at most this many."""
    lease_s: float = LEASE_SECONDS
    """A slot open this long without progress is swept (its hops re-sent), and only then
    may a dead letter fail its task."""
    max_map_width: int = 0
    """The ``map_width`` quota: the tasks one superstep of a run may have (0: no limit;
    :mod:`engine.map_quota`)."""
    sweeper_delays: bool = False
    """Hops travel by self-invocation, which cannot hold a hop: the sweeper sends retries
    when due (engine/retries.py)."""
    timeout_ceiling_s: float | None = None
    """The longest ``timeout_s`` a node may declare: the worker's function timeout minus the
    commit margin (engine/retry_policy.py); ``None``: no ceiling."""
    owner_runs_in_flight: int = 0
    """The ``runs_in_flight`` quota, for the child runs subgraph nodes start (0: no limit;
    :mod:`engine.runs_quota`)."""
    fold_above: int = FOLD_ABOVE
    """A superstep of more tasks closes by a fold over several hops (engine/fold.py)."""
    fold_page: int = FOLD_PAGE
    """Task records a fold hop reads (engine/fold.py)."""

    def protocol(self) -> ProtocolConfig:
        return ProtocolConfig(
            self.state_limit_bytes, self.counted_fan_in_above, self.map_window, self.lease_s,
            self.max_map_width, self.sweeper_delays, self.fold_above, self.fold_page,
        )  # fmt: skip


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
        self._notifier: Notifier = notifier or NullNotifier()
        self.clock = clock
        self.ids = ids or RandomIds()
        self.config = config or EngineConfig()
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self.protocol = HopProtocol(
            store, queue, tools, self._notifier, clock, self.config.protocol(), self.graph
        )
        self.protocol.subgraphs.runs_in_flight = self.config.owner_runs_in_flight

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    @notifier.setter
    def notifier(self, notifier: Notifier) -> None:
        """Replace where events go, for the protocol's events too."""
        self._notifier = notifier
        self.protocol.notifier = notifier

    # -- graphs ----------------------------------------------------------------------------
    def create_graph(self, doc: Any, owner: str | None = None) -> tuple[GraphRecord, Graph]:
        """Validate a definition in any dialect and save its canonical form."""
        graph = self._validated(doc, owner)
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
        graph = self._validated(doc, owner)
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

    def _validated(self, doc: Any, owner: str | None = None) -> Graph:
        """``doc`` checked against the registered tools (and the keys they declare writing),
        its subgraph nodes' references resolved to graphs ``owner`` can read."""
        graph = build_graph(
            doc, set(self.tools.names()), declared_writes(self.tools), toolkit=self.tools,
            timeout_ceiling_s=self.config.timeout_ceiling_s,
        )  # fmt: skip
        if not any(n.subgraph is not None for n in graph.nodes.values()):
            return graph
        return resolve_subgraphs(graph, lambda ref: self._readable(ref, owner))

    def _readable(self, ref: str, owner: str | None) -> tuple[str, Graph]:
        """The graph ``ref`` names for ``owner`` (its id, or the newest of its graphs with
        that name); GraphNotFound if ``owner`` has none (another owner's graph included)."""
        try:
            record = self.store.get_graph(ref)
        except GraphNotFound:
            record = self._named(ref, owner)
        if owner is not None and record.owner != owner:
            raise GraphNotFound(ref)
        return record.graph_id, self.graph(record.graph_id)

    def _named(self, name: str, owner: str | None) -> GraphRecord:
        cursor: str | None = None
        while True:
            page = self.store.list_graphs(limit=100, cursor=cursor, owner=owner)
            found = next((g for g in page.items if g.name == name), None)
            if found is not None:
                return found
            cursor = page.cursor
            if cursor is None or not page.items:
                raise GraphNotFound(name)

    def graph(self, graph_id: str) -> Graph:
        """The validated graph; cached, since graphs never change once created."""
        graph = self._graphs.get(graph_id)
        if graph is None:
            graph = build_graph(self.store.get_graph(graph_id).definition, toolkit=self.tools)
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
        breakpoints: Breakpoints = NO_BREAKPOINTS,
    ) -> tuple[RunRecord, bool]:
        """Create a run and dispatch its first hop; returns (run, created). ``breakpoints``:
        the run's own, beside its graph's (nodes of its graph, else InvalidInputError).

        The same idempotency key with the same input and step limit returns the same run;
        with another, IdempotencyConflict (nothing is started). A run whose first step is
        not committed yet gets its first hop dispatched again, so a start that failed
        halfway is finished by the retry."""
        graph = self.graph(graph_id)
        state = graph.start_state(self._checked_input(input))
        limit = self._max_steps(max_steps, graph)
        check_breakpoints(graph, breakpoints)
        try:  # a map at the entry needs its list in the input
            entry = plan_of(graph, (graph.entry,), state)
        except ReducerError as exc:
            raise InvalidInputError(f"input: {exc}") from None
        check_map_width(entry, self.config.max_map_width)  # refused before the run exists
        now = self.clock()
        run_id = self.ids.run_id(graph_id, idempotency_key)
        header = RunRecord(
            run_id, graph_id, "running", state, limit, now, now,
            node=graph.entry, idempotency_key=idempotency_key, owner=owner,
            input_digest=input_digest(state) if idempotency_key is not None else None,
            breakpoints=breakpoints.to_dict(),
        )  # fmt: skip
        run, created = self.store.create_run(header)
        if not created:
            check_same_request(run, header)
        if run.status == "running" and run.steps == 0:
            self.protocol.start(run, recheck=not created)
        if created:  # nobody can have subscribed to a run that did not exist: no look-up
            started = [run_event(run_id, "running", now, steps=0)]
            self.notifier.publish(run_id, started, Audience(subscribers=()))
        return run, created

    def _checked_input(self, input: Any) -> dict[str, Any]:
        if input is None:
            return {}
        if not isinstance(input, dict):
            raise InvalidInputError("input must be a JSON object (the run's initial state)")
        # The transports apply the rule at the door; in-process callers meet it here.
        check_json(input, ("input",))
        size = state_size(input)
        limit = self.config.state_limit_bytes
        if limit is not None and size > limit:
            raise StateTooLargeError(size, limit)
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

    def max_steps_for(self, requested: int | None, graph: Graph, default: int) -> int:
        """A command's step limit: ``requested``, checked as a start's is, else ``default``."""
        return self._max_steps(requested if requested is not None else default, graph)

    def cancel_run(self, run_id: str, reason: str = "cancelled by request") -> RunRecord:
        """Cancel a running run; ConflictError if it is already final."""
        run = cancel_run(self.store, run_id, self.clock(), reason)
        self.notifier.publish(run_id, [run_status_event(run, self.clock())], self._before(run))
        self.protocol.subgraphs.after_cancel(run)
        return run

    def resume_run(
        self, run_id: str, value: Any = None, task: str | None = None,
        question: str | None = None,
    ) -> RunRecord:  # fmt: skip
        """Answer a paused run's question (``task``: which, when several wait), exactly once;
        the run goes on from that task (engine/pauses.py). RunNotFound, ConflictError (409:
        nothing waits, or it was answered otherwise), InvalidInputError (422: a value its
        question's schema refuses)."""
        run = self.store.get_run(run_id)
        self.protocol.pauses.resume(run, value, task, question)
        return self.store.get_run(run_id)

    def pending_questions(self, run: RunRecord) -> list[dict[str, Any]]:
        """What a paused run waits for (one query, for a paused run only)."""
        return self.protocol.pauses.pending(run)

    def _before(self, cancelled: RunRecord) -> Audience | None:
        """The cancel took the slot of the superstep whose publisher would have made up for
        the one before it to a subscriber that missed it (engine.ports.Audience): so does
        the cancel's publish."""
        if cancelled.steps < 2:  # the cancel took slot 0: there is no superstep before it
            return None
        return Audience(previous=self.store.get_step(cancelled.run_id, cancelled.steps - 2))

    # -- the run protocol (engine/protocol.py) --------------------------------------------
    def process_hop(self, hop: Hop, delivery_id: str, attempt: int = 1) -> HopResult:
        """Apply one hop: run its task, commit it exactly once, route onwards."""
        return self.protocol.process(hop, delivery_id, attempt)

    def fail_hop(self, hop: Hop, reason: str, *, by_worker: bool = False) -> bool:
        """Mark the run failed because its hop is being dead-lettered. True if this call
        ended the run; False if it changed nothing: the run is not at the hop's slot (unknown,
        already final, moved on), the task committed or may still be running (its slot has
        not been open for the lease), or the slot was taken meanwhile."""
        return self.protocol.fail(hop, reason, by_worker=by_worker)

    def sweep(self, limit: int = 1_000) -> dict[str, int]:
        """Re-send the hops of every running run that made no progress for longer than the
        lease (:meth:`HopProtocol.sweep`); returns the hops sent per run swept. At most
        ``limit`` running runs are looked at, oldest first last: a schedule calls this every
        minute, and a run that is not reached this time is the next."""
        sent: dict[str, int] = {}
        cursor: str | None = None
        looked = 0
        while looked < limit:
            page = self.store.list_runs(status="running", limit=min(100, limit - looked),
                                        cursor=cursor)  # fmt: skip
            for run in page.items:
                count = self.protocol.sweep(run.run_id)
                if count:
                    sent[run.run_id] = count
            looked += len(page.items)
            cursor = page.cursor
            if cursor is None or not page.items:
                break
        # Paused runs wait at no cost; only a carrier that cannot hold a hop needs the
        # sweeper to keep their deadlines: one query finds those that passed (engine/pauses.py).
        if self.protocol.config.sweeper_delays:
            for run_id, count in self.protocol.pauses.swept_deadlines(limit).items():
                sent[run_id] = sent.get(run_id, 0) + count
        return sent
