"""The in-process runner: the durable run protocol over the memory adapters.

``hopgraph run FILE --local``, the tests and the benchmarks run a graph here with the same
protocol as the worker Lambda (:class:`~engine.protocol.HopProtocol`): the same slot checks,
commits, closes, log and events, over :class:`~engine.memory.MemoryRunStore` and a queue
whose hops are applied by the caller's thread and a pool of threads (a chain runs on the
caller's thread; a superstep's tasks run side by side, a map's at most ``map_window`` or
``max_concurrency`` at a time, as on AWS). What differs from AWS is only the carrier: nothing
here is lost or delivered twice.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.errors import GraphNotFound
from engine.events import run_event
from engine.graph import Graph
from engine.memory import MemoryRunStore
from engine.ports import (
    Audience,
    Clock,
    Hop,
    Notifier,
    NullNotifier,
    RunRecord,
    RunStatus,
    RunStore,
    StepRecord,
)
from engine.protocol import HopProtocol, ProtocolConfig
from engine.reducers import ReducerError
from engine.subgraphs import check_nesting
from engine.superstep import Task, merge_key, plan_of
from engine.tools import Toolkit

EventSink = Callable[[dict[str, Any]], None]
Log = list[dict[str, Any]]
DEFAULT_MAX_STEPS = 100
MAX_THREADS = 64
"""Hops applied at once; a map's window and ``max_concurrency`` apply within them."""


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    status: RunStatus
    state: dict[str, Any]
    steps: int
    error: str | None = None
    entries: Log | Callable[[], Log] = field(default_factory=list, repr=False)
    """The execution log (:attr:`log`), or what reads it from the run's store."""

    @property
    def log(self) -> Log:
        """The execution log: a superstep of one task as its step's log entry, a superstep of
        several as one entry per task (``seq`` is the superstep; ``task`` names it). Read
        from the run's store the first time it is asked: a caller that wants the end state
        alone does not pay for reading back every step."""
        entries = self.entries
        if callable(entries):
            entries = entries()
            object.__setattr__(self, "entries", entries)
        return entries


class PoolQueue:
    """A :class:`~engine.ports.StepQueue` whose hops a thread pool applies as they are sent;
    :meth:`wait` returns once no hop is queued or running (and re-raises the first error a
    hop raised: in process, a failure of the protocol itself is a bug to show).

    A thread that applies a hop goes on with the first hop that hop sent, and hands the others
    to the pool: a chain runs on one thread with no hand-over per step (the caller's, from
    :meth:`run_here`), and a fan-out's tasks still run side by side."""

    def __init__(self, apply: Callable[[Hop], object], threads: int = MAX_THREADS) -> None:
        self._apply = apply
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        """Started by the first hop handed over: a chain run on its caller's thread starts
        no thread at all."""
        self._pending = 0
        self._held: set[threading.Timer] = set()
        """Delayed hops not yet due (each counted in ``_pending``)."""
        self._idle = threading.Condition()
        self._error: BaseException | None = None
        self._sent = threading.local()
        """The hops sent by the hop this thread applies (unset outside the pool)."""

    def dispatch(self, hop: Hop) -> None:
        sent: deque[Hop] | None = getattr(self._sent, "hops", None)
        if sent is not None and hop.delay_s <= 0:  # counted once it leaves this thread
            sent.append(hop)
            return
        with self._idle:
            self._pending += 1
        if hop.delay_s > 0:  # a retry held until its time, as SQS holds a delayed message
            timer = threading.Timer(hop.delay_s, lambda: self._due(timer, hop))
            timer.daemon = True
            with self._idle:
                self._held.add(timer)
            timer.start()
            return
        self._submit(hop)

    def _submit(self, hop: Hop) -> None:
        if self._pool is None:
            with self._idle:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, "hop")
        self._pool.submit(self._run, hop)

    def _due(self, timer: threading.Timer, hop: Hop) -> None:
        with self._idle:
            if timer not in self._held:  # dropped by wait(): its run had ended
                return
            self._held.discard(timer)
        self._submit(hop)

    def dispatch_batch(self, hops: list[Hop]) -> None:
        for hop in hops:
            self.dispatch(hop)

    def run_here(self, start: Callable[[], object]) -> None:
        """Call ``start`` on this thread, then apply the hops it sends as a pool thread
        applies a hop's: the first on this thread, the others handed to the pool. A chain
        then runs on its caller's thread: no thread is started, and no step is handed over."""
        self._drain(start, counted=False)

    def _run(self, hop: Hop) -> None:
        self._drain(functools.partial(self._apply_one, hop), counted=True)

    def _drain(self, first: Callable[[], object], *, counted: bool) -> None:
        """Call ``first``, then apply the first hop each hop sends, on this thread: that one
        takes over ``first``'s count in ``_pending`` (if it had one), so a chain takes no
        lock per step; the others are counted and handed to the pool."""
        sent: deque[Hop] = deque()
        self._sent.hops = sent
        try:
            first()
            while sent:
                current = sent.popleft()
                if sent:
                    with self._idle:
                        self._pending += len(sent)
                    while sent:
                        self._submit(sent.popleft())
                self._apply_one(current)
        finally:
            self._sent.hops = None
            if counted:
                with self._idle:
                    self._pending -= 1
                    if self._pending <= len(self._held):  # idle, but for hops not yet due
                        self._idle.notify_all()

    def _apply_one(self, hop: Hop) -> None:
        try:
            self._apply(hop)
        except BaseException as exc:  # kept for wait(): a pool thread has nobody to tell
            with self._idle:
                self._error = self._error or exc

    def wait(self, ended: Callable[[], bool] = lambda: False) -> None:
        """Return once no hop is queued or running; or once only delayed hops are left and
        ``ended()`` says nothing is left for them to do (a deadline's hop held for a run that
        has ended since: it would find its slot taken and change nothing)."""
        with self._idle:
            self._idle.wait_for(
                lambda: self._pending == 0 or (self._pending == len(self._held) and ended())
            )
            for timer in self._held:
                timer.cancel()
            self._pending -= len(self._held)
            self._held.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        # Nothing is applied any more: let go of what applies hops (the protocol, which holds
        # this queue), so that the run's protocol and store are freed with their last user.
        self._apply = _applied
        if self._error is not None:
            raise self._error


def _applied(hop: Hop) -> object:
    raise RuntimeError(f"hop {hop.task_key!r} sent after its run's queue was waited for")


class _SinkNotifier:
    """Hands every event to the runner's sink, in the order the protocol publishes them.

    The protocol treats progress as best effort and swallows a notifier's errors; in process
    the sink is the caller's own (a terminal that was closed, a pipe nobody reads), so its
    first error is kept, the run stops, and :meth:`InProcessRunner.run` raises it."""

    def __init__(self, sink: EventSink | None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None:
        if self._sink is None:
            return
        with self._lock:
            if self.error is not None:
                return
            try:
                for event in events:
                    self._sink(event)
            except BaseException as exc:
                self.error = exc


class InProcessRunner:
    """Runs graphs to their end in this process, through the durable protocol.

    ``store``: where the run and its log are recorded (a fresh memory store per run when
    ``None``). ``on_event``: receives every step and run event as the WebSocket carries it.
    """

    def __init__(
        self,
        tools: Toolkit,
        *,
        store: RunStore | None = None,
        on_event: EventSink | None = None,
        clock: Clock = time.time,
        state_limit_bytes: int | None = None,
        config: ProtocolConfig | None = None,
        subgraphs: Mapping[str, Graph] | None = None,
    ) -> None:
        self.tools = tools
        self.subgraphs = dict(subgraphs or {})
        """The graphs that subgraph nodes name, by name (:mod:`engine.subgraphs`)."""
        self.store = store
        self.on_event = on_event
        self.clock = clock
        self.config = config or ProtocolConfig(state_limit_bytes)

    def run(
        self,
        graph: Graph,
        input: dict[str, Any] | None = None,
        *,
        max_steps: int | None = None,
        run_id: str | None = None,
        graph_id: str = "local",
    ) -> RunResult:
        run_id = run_id or "r_" + uuid.uuid4().hex[:24]
        store = self.store if self.store is not None else MemoryRunStore()
        notifier = _SinkNotifier(self.on_event)
        published: Notifier = notifier if self.on_event is not None else NullNotifier()
        delivery = iter(range(1, 1 << 62))

        def apply(hop: Hop) -> object:
            if notifier.error is not None:  # the caller's sink failed: the run stops
                return None
            return protocol.process(hop, f"d{next(delivery)}")

        queue = PoolQueue(apply)

        def graphs(wanted: str) -> Graph:
            found = graph if wanted == graph_id else self.subgraphs.get(wanted)
            if found is None:
                raise GraphNotFound(wanted)
            return found

        check_nesting(graph, lambda ref: (ref, graphs(ref)))

        protocol = HopProtocol(store, queue, self.tools, published, self.clock, self.config, graphs)
        now = self.clock()
        limit = max_steps or graph.max_steps or DEFAULT_MAX_STEPS
        state = graph.start_state(input or {})  # reduced keys start empty, as LangGraph's
        try:  # a map at the entry needs a list in the input (the API refuses it with a 400)
            plan_of(graph, (graph.entry,), state)
        except ReducerError as exc:
            notifier.publish(run_id, [run_event(run_id, "failed", now, reason=str(exc), steps=0)])
            return RunResult(run_id, "failed", state, 0, str(exc))
        header = RunRecord(run_id, graph_id, "running", state, limit, now, now,
                           node=graph.entry)  # fmt: skip
        run, _ = store.create_run(header)
        if self.on_event is not None:  # nobody listens: build no event
            notifier.publish(run_id, [run_event(run_id, "running", now, steps=0)])
        try:
            queue.run_here(functools.partial(protocol.start, run, recheck=False))
        finally:
            queue.wait(ended=lambda: store.get_run(run_id).is_final)
        if notifier.error is not None:
            raise notifier.error
        done = store.get_run(run_id)
        log = functools.partial(execution_log, store, run_id, done.steps, graph)
        return RunResult(run_id, done.status, done.state, done.steps, done.error, log)


def execution_log(store: RunStore, run_id: str, steps: int, graph: Graph) -> list[dict[str, Any]]:
    """The run's log: each superstep of one task as its step's entry, each superstep of
    several as one entry per task, in merge order (:func:`engine.superstep.merge_key`)."""
    log: list[dict[str, Any]] = []
    for step in store.list_steps(run_id, limit=steps + 1).items:
        if step.seq >= steps:  # committed after the run's end (a redrive): not its log
            break
        tasks = store.list_tasks(run_id, step.seq) if step.tasks or step.tasks_total else []
        if not tasks:
            entry = step.log_entry()  # a new dict: named in place
            entry["task"] = step.node
            log.append(entry)
            continue
        order = sorted(tasks, key=lambda t: merge_key(graph, Task(t.node, t.index)))
        log.extend(_task_entry(step, t) for t in order)
    return log


def _task_entry(step: StepRecord, task: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "seq": step.seq, "task": task.key, "node": task.node, "tool": task.tool,
        "status": task.status, "updates": task.updates, "duration_ms": task.duration_ms,
        "next": list(task.targets),
    }  # fmt: skip
    if task.index is not None:
        entry["index"] = task.index
    if task.error is not None:
        entry["error"] = task.error
    if task.child_run_id is not None:
        entry["child_run_id"] = task.child_run_id
    return entry
