"""Pauses: a task that waits for a person, as a record and a header move, never a sleeping
worker and never a hop in flight.

A task pauses when its node is an ``interrupt`` node, when its tool returns
``ctx.interrupt(...)`` (its other updates held), or at a static breakpoint
(``interrupt_before`` / ``interrupt_after``: :mod:`engine.interrupt_spec`). The pause is a
record in its task's slot (run, superstep, task, kind); the run becomes ``paused`` once
nothing else can proceed: at once for a superstep of one task, when its other tasks have
all committed or paused for one of several. An answer finishes the task from outside, as a
subgraph's child does::

    hop of task t (superstep k)                                   store
    ---------------------------------------------------------------------------------------
    slot check; t pauses: PAUSE#k#t written, conditional on "slot empty", and for a
    superstep of one task, the header running -> paused in the same write ----> "waiting"
         (P1) crash here: the redelivery finds PAUSE#k#t and holds the run if it should
    [a deadline: a hop held until it passes (SQS DelaySeconds, held again while early)]

    POST /runs/{id}/resume {value}
    check the value against the question's schema (422), find t's pending pause (409 if
    none: not paused, or answered with another value; the same answer again is answered
    the same: exactly once)
    PAUSE#k#t answered, conditional on "not answered", and the header paused -> running,
    in one write
         (P2) crash here: the answer is durable and the run running: the sweeper finds the
              slot stalled and sends t's hop again
    send t's hop (recheck) -> the worker finds the answer and commits t: its held updates
    and the answer under the question's key (through its reducer), routed by its node's
    edges. t's tool does NOT run again (its side effects happened once, before it asked).

A deadline that passes answers the pause as timed out (the same conditional write): the
task goes to ``on_timeout`` if its question has one, and fails otherwise. Cancel works on a
paused run as on a running one (the cancel takes the open slot; a later answer finds the
run ended: 409).

A paused run costs nothing while it waits: the sweeper lists running runs only, and no hop
is in flight (but the one holding a deadline). With self-invocation, which cannot hold a
hop, a pause's deadline is written with it, and the sweeper's one query a pass finds those
that passed (``sweeper_delays``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import ConflictError, InvalidInputError, RunNotFound, StepConflict
from engine.events import iso, run_event
from engine.graph import Graph
from engine.interrupt_spec import NO_BREAKPOINTS, Breakpoints, Question, answer_problem
from engine.owners import weakly
from engine.ports import Hop, PauseKind, PauseRecord, RunRecord
from engine.superstep import Task, TaskResult, routed
from engine.tools import Send

if TYPE_CHECKING:
    from engine.protocol import HopProtocol, Origin

PauseOutcome = Literal["waiting", "stale"]

EARLY_TOLERANCE_S = 1.0
"""A deadline hop this close to its time counts as due (SQS delays are whole seconds)."""

SQS_MAX_DELAY_S = 900.0

LOOK_BACK = 8
"""An answer sent again with no question id finds its question this many supersteps back at
most (one query each, on that path only): a client retrying its request. The question's id
(``pending[].id``) finds it however far the run went on."""


class Pauses:
    """The protocol's pause hooks (:class:`engine.protocol.HopProtocol` owns one)."""

    def __init__(self, protocol: HopProtocol) -> None:
        self.protocol = weakly(protocol)

    # -- before the tool runs ------------------------------------------------------------------
    def before_run(
        self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str, *, suspect: bool
    ) -> PauseOutcome | TaskResult | None:
        """``None`` to run the tool; a result to commit instead (an answered pause); or
        ``"waiting"`` (the task waits for its answer). Reads the task's pauses only where
        one may be: a node that declares a pause, or a hop that may not be its first
        (a redelivery, a re-sent hop, the hop an answer sends)."""
        stops = _breakpoints(graph, origin)
        if not _may_pause(graph, stops, hop.node) and not suspect:
            return None
        found = self._pauses_of(hop)
        for kind in ("before", "interrupt", "after"):
            pause = found.get(kind)
            if pause is None:
                continue
            if pause.pending:
                pause = self._timed_out(pause, delivery_id)
            if pause is None:
                self._hold_if_stuck(hop, origin)
                self._hold_deadline(hop, found)
                return "waiting"
            if pause.kind != "before":
                return self._answered(graph, hop, origin, pause)
        node = graph.nodes[hop.node]
        if hop.node in stops.before and "before" not in found:
            return self._pause(hop, origin, "before", Question(), {}, delivery_id)
        if node.interrupt is not None and "interrupt" not in found:
            return self._pause(hop, origin, "interrupt", node.interrupt, {}, delivery_id)
        return None

    # -- after it ran ----------------------------------------------------------------------------
    def after_run(
        self, graph: Graph, hop: Hop, origin: Origin, result: TaskResult, delivery_id: str
    ) -> PauseOutcome | None:
        """A task whose tool asked (``ctx.interrupt``), or whose node is a breakpoint after:
        it pauses with its result held. ``None``: commit the result as usual."""
        if result.asked is not None:
            asked = result.asked
            question = Question(asked.prompt, asked.key,
                                dict(asked.schema) if asked.schema is not None else None,
                                asked.timeout_s)  # fmt: skip
            return self._pause(hop, origin, "interrupt", question, _held(result), delivery_id)
        if result.ok and hop.node in _breakpoints(graph, origin).after:
            return self._pause(hop, origin, "after", Question(), _held(result), delivery_id)
        return None

    # -- pausing ---------------------------------------------------------------------------------
    def _pause(
        self, hop: Hop, origin: Origin, kind: PauseKind, question: Question,
        held: dict[str, Any], delivery_id: str,
    ) -> PauseOutcome:  # fmt: skip
        now = self.protocol.clock()
        record = PauseRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.node, index=hop.index, kind=kind,
            since=now, prompt=question.prompt, key=question.key,
            schema=dict(question.schema) if question.schema is not None else None,
            until=now + question.timeout_s if question.timeout_s is not None else None,
            on_timeout=question.on_timeout, held={**held, "parallel": origin.parallel},
            committed_by=delivery_id,
        )  # fmt: skip
        alone = not origin.parallel
        try:
            self.protocol.store.commit_pause(record, hold=alone)
        except StepConflict:
            # Our own pause (an earlier attempt of this delivery, or a copy's), or the run
            # ended meanwhile (a cancel): look again, as a redelivery would.
            found = self._pauses_of(hop).get(kind)
            if found is None:
                return "stale"
            record = found
        else:
            if alone:
                self._announce(hop.run_id, [record])
        if not alone:
            self._hold_if_stuck(hop, origin)
        self._hold_deadline(hop, {kind: record})
        return "waiting"

    def after_fan_in(self, graph: Graph, hop: Hop, origin: Origin) -> Literal["committed"]:
        """A task committed and its superstep cannot close yet: if the tasks left all wait
        for answers, the run is paused now. Looked at only where a node of the superstep
        declares a pause, or after a re-sent hop (an answer's); a tool's ``ctx.interrupt``
        elsewhere is held by its own pause (or, when the two raced, by the sweeper's look at
        the stalled slot)."""
        # (an answer's hop is a re-sent one: after it, the other questions may be all that is
        # left, asked by tools that declare nothing)
        stops = _breakpoints(graph, origin)
        if hop.recheck or any(_may_pause(graph, stops, n) for n in origin.planned.sizes):
            self._hold_if_stuck(hop, origin)
        return "committed"

    def _hold_if_stuck(self, hop: Hop, origin: Origin) -> None:
        """Move the run to ``paused`` if every task of its superstep has committed or waits
        for an answer (and one does); nothing if it is paused already, or moves on."""
        store = self.protocol.store
        pending = [p for p in store.list_pauses(hop.run_id, hop.seq) if p.pending]
        if not pending:
            return
        waiting = {(p.node, p.index) for p in pending}
        if origin.parallel:
            done = {(t.node, t.index) for t in store.list_tasks(hop.run_id, hop.seq)}
            if any((t.node, t.index) not in done | waiting for t in origin.planned):
                return  # something else can still proceed: it will look again
        if store.hold_run(hop.run_id, pending, self.protocol.clock()):
            self._announce(hop.run_id, pending)

    def _hold_deadline(self, hop: Hop, found: dict[str, PauseRecord]) -> None:
        """A pending pause with a deadline keeps one hop held until it (SQS holds a message
        for at most 900 s: a hop that comes early is held again). Only a plain hop does it:
        a resent copy (``recheck``) finds the hop that holds the deadline still on its way."""
        if hop.recheck or self.protocol.config.sweeper_delays:
            return
        deadlines = [p.until for p in found.values() if p.pending and p.until is not None]
        if not deadlines:
            return
        delay = min(deadlines) - self.protocol.clock()
        delay = max(0.0, min(delay, SQS_MAX_DELAY_S))
        self.protocol.queue.dispatch(replace(hop, recheck=False, attempt=1, delay_s=delay))

    def _timed_out(self, pause: PauseRecord, delivery_id: str) -> PauseRecord | None:
        """``pause`` answered as timed out if its deadline passed (``None``: still pending)."""
        now = self.protocol.clock()
        if pause.until is None or now < pause.until - EARLY_TOLERANCE_S:
            return None
        answered = replace(pause, answered_at=now, value=None, timed_out=True,
                           committed_by=f"timeout:{delivery_id}")  # fmt: skip
        try:
            self.protocol.store.answer_pause(answered)
        except StepConflict:
            again = self._find(pause)
            return again if again is not None and not again.pending else None
        return answered

    # -- an answered pause -----------------------------------------------------------------------
    def _answered(self, graph: Graph, hop: Hop, origin: Origin, pause: PauseRecord) -> TaskResult:
        """The result a paused task commits once answered: what it held, with the answer
        under its question's key, routed by its node's edges (or to ``on_timeout``)."""
        task = Task(hop.node, hop.index)
        held = pause.held
        tool = str(held.get("tool") or graph.nodes[hop.node].tool)
        took = float(held.get("duration_ms") or 0.0)
        updates = dict(held.get("updates") or {})
        if pause.timed_out:
            if pause.on_timeout is None:
                error = f"{pause.task}: nobody answered {pause.prompt or 'its question'!r} in time"
                return TaskResult(task, tool, {}, (), took, error)
            return TaskResult(task, tool, updates, (pause.on_timeout,), took)
        if pause.kind == "after":
            sends = tuple(Send.from_dict(s) for s in held.get("sends") or ())
            return TaskResult(task, tool, updates, tuple(held.get("targets") or ()), took,
                              sends=sends)  # fmt: skip
        if pause.key is not None:
            updates[pause.key] = pause.value
        return replace(routed(graph, self.protocol.tools, task, origin.state, updates, took),
                       tool=tool)  # fmt: skip

    # -- resuming (a caller's command) -------------------------------------------------------
    def resume(
        self, run: RunRecord, value: Any, task: str | None, question: str | None = None
    ) -> PauseRecord:
        """Answer the run's pending question (``task``: which, when several wait; or
        ``question``, its id, which names one question for ever), exactly once, and send its
        task's hop. The same answer again is answered the same. Raises ConflictError (409)
        when nothing waits for an answer, or it was answered otherwise; InvalidInputError
        (422) for a value its question refuses."""
        pause = self._asked(run, task, question)
        if not pause.pending:
            return _same_answer(pause, value)
        problem = _value_problem(pause, value)
        if problem is not None:
            raise InvalidInputError(problem)
        answered = replace(pause, answered_at=self.protocol.clock(), value=value,
                           committed_by=f"resume:{uuid.uuid4().hex}")  # fmt: skip
        try:
            self.protocol.store.answer_pause(answered)
        except StepConflict:
            again = self._find(pause)
            if again is None or again.pending:
                raise ConflictError(f"run {run.run_id!r} ended before its answer") from None
            return _same_answer(again, value)
        self._send(run, answered)
        return answered

    def _asked(self, run: RunRecord, task: str | None, question: str | None) -> PauseRecord:
        """The question an answer is for: the one its id names; else the one pending in the
        open superstep (``task``: which); else, for an answer sent again, the latest one
        answered in the supersteps before (at most :data:`LOOK_BACK` of them)."""
        store = self.protocol.store
        if question is not None:
            seq, kind, task_key = _question_id(question)
            for found in store.list_pauses(run.run_id, seq):
                if (found.kind, found.task) == (kind, task_key):
                    return found
            raise ConflictError(f"run {run.run_id!r} never asked question {question!r}")
        pauses = store.list_pauses(run.run_id, run.steps)
        seq = run.steps
        while not any(p.pending for p in pauses) and seq > max(0, run.steps - LOOK_BACK):
            seq -= 1  # answered, and gone on since? (a client's retry)
            earlier = [p for p in store.list_pauses(run.run_id, seq) if task in (None, p.task)]
            if earlier:
                pauses = earlier
                break
        return _chosen(pauses, task, run)

    def _send(self, run: RunRecord, pause: PauseRecord) -> None:
        hop = Hop(run.run_id, run.graph_id, pause.seq, pause.node, recheck=True,
                  index=pause.index, parallel=bool(pause.held.get("parallel")))  # fmt: skip
        self._publish(run.run_id, [run_event(run.run_id, "running", self.protocol.clock())])
        self.protocol.queue.dispatch(hop)

    # -- the sweeper (self-invocation: no hop can hold a deadline) ----------------------------
    def swept_deadlines(self, limit: int) -> dict[str, int]:
        """The hops of pauses whose deadline passed, sent (``sweeper_delays`` only: a carrier
        that cannot hold a hop); a deadline whose pause was answered is forgotten. One query,
        however many runs are paused; a deadline stays until its pause is answered, so a hop
        lost on its way is sent again at the next pass."""
        store = self.protocol.store
        sent: dict[str, int] = {}
        for deadline in store.due_deadlines(self.protocol.clock(), limit):
            pause = next((p for p in store.list_pauses(deadline.run_id, deadline.seq)
                          if (p.task, p.kind) == (deadline.task, deadline.kind)), None)  # fmt: skip
            if pause is None or not pause.pending:
                store.forget_deadline(deadline)
                continue
            try:
                run = store.get_run(deadline.run_id)
            except RunNotFound:
                store.forget_deadline(deadline)
                continue
            if run.is_final:
                store.forget_deadline(deadline)
                continue
            self.protocol.queue.dispatch(Hop(
                run.run_id, run.graph_id, pause.seq, pause.node, recheck=True,
                index=pause.index, parallel=bool(pause.held.get("parallel")),
            ))  # fmt: skip
            sent[run.run_id] = sent.get(run.run_id, 0) + 1
        return sent

    # -- reading -----------------------------------------------------------------------------
    def pending(self, run: RunRecord) -> list[dict[str, Any]]:
        """What a run waits for (``GET /runs/{id}``): its open superstep's pending questions.
        One query, for a paused run only."""
        if run.status != "paused":
            return []
        return [p.question() for p in self.protocol.store.list_pauses(run.run_id, run.steps)
                if p.pending]  # fmt: skip

    def _pauses_of(self, hop: Hop) -> dict[str, PauseRecord]:
        return {
            p.kind: p
            for p in self.protocol.store.list_pauses(hop.run_id, hop.seq)
            if p.node == hop.node and p.index == hop.index
        }

    def _find(self, pause: PauseRecord) -> PauseRecord | None:
        for found in self.protocol.store.list_pauses(pause.run_id, pause.seq):
            if (found.node, found.index, found.kind) == (pause.node, pause.index, pause.kind):
                return found
        return None

    # -- events ------------------------------------------------------------------------------
    def _announce(self, run_id: str, pending: list[PauseRecord]) -> None:
        event = run_event(run_id, "paused", self.protocol.clock())
        event["pending"] = [_with_times(p.question()) for p in pending]
        self._publish(run_id, [event])

    def _publish(self, run_id: str, events: list[dict[str, Any]]) -> None:
        try:
            self.protocol.notifier.publish(run_id, events)
        except Exception:  # progress is best effort
            return


def _breakpoints(graph: Graph, origin: Origin) -> Breakpoints:
    """The breakpoints a superstep stops at: its graph's, and its run's own."""
    if not origin.breakpoints and not graph.interrupt_before and not graph.interrupt_after:
        return NO_BREAKPOINTS  # the common case, asked twice a hop: nothing to build
    own = Breakpoints.from_dict(origin.breakpoints)
    return Breakpoints(graph.interrupt_before | own.before, graph.interrupt_after | own.after)


def _may_pause(graph: Graph, stops: Breakpoints, node: str) -> bool:
    """Whether a task of ``node`` may wait for input by declaration (an interrupt node, a
    breakpoint): only those read their pauses on a first delivery."""
    return graph.nodes[node].interrupt is not None or node in stops.before or node in stops.after


def _question_id(question: str) -> tuple[int, str, str]:
    """A question id (:meth:`engine.ports.PauseRecord.question`): its superstep, kind, task."""
    seq, _, rest = question.partition("/")
    kind, _, task = rest.partition("/")
    if not seq.isdecimal() or kind not in ("interrupt", "before", "after") or not task:
        raise InvalidInputError(f"question: {question!r} is no question id (see pending[].id)")
    return int(seq), kind, task


def _with_times(question: dict[str, Any]) -> dict[str, Any]:
    """A question as events and the API show it: its times in ISO 8601."""
    until = question["until"]
    return {**question, "since": iso(question["since"]),
            "until": None if until is None else iso(until)}  # fmt: skip


def _held(result: TaskResult) -> dict[str, Any]:
    return {
        "updates": result.updates, "targets": list(result.targets),
        "sends": [s.to_dict() for s in result.sends], "tool": result.tool,
        "duration_ms": result.duration_ms,
    }  # fmt: skip


def _chosen(pauses: list[PauseRecord], task: str | None, run: RunRecord) -> PauseRecord:
    """The pause an answer is for: the one named, or the only one pending (or, for an answer
    sent again, the only one answered)."""
    if task is not None:
        named = [p for p in pauses if p.task == task]
        pending = [p for p in named if p.pending]
        if pending or named:
            return (pending or named)[-1]
        raise ConflictError(f"run {run.run_id!r} has no question for task {task!r} "
                            f"(it is {run.status})")  # fmt: skip
    pending = [p for p in pauses if p.pending]
    if len(pending) > 1:
        names = ", ".join(p.task for p in pending)
        raise InvalidInputError(f"{len(pending)} questions wait ({names}): say which with "
                                '"task"')  # fmt: skip
    if pending:
        return pending[0]
    answered = [p for p in pauses if not p.pending]
    if answered:  # an answer sent again: the latest question's
        return answered[-1]
    raise ConflictError(f"run {run.run_id!r} is {run.status}: it waits for no answer")


def _same_answer(pause: PauseRecord, value: Any) -> PauseRecord:
    """An answer sent again: the same one is answered the same; another one is a conflict."""
    if pause.timed_out:
        raise ConflictError(f"the question of {pause.task!r} timed out before this answer")
    if pause.value != value:
        raise ConflictError(f"the question of {pause.task!r} was answered already, with "
                            "another value")  # fmt: skip
    return pause


def _value_problem(pause: PauseRecord, value: Any) -> str | None:
    if pause.kind != "interrupt":
        return None if value is None else "a breakpoint takes no value: resume without one"
    return answer_problem(pause.schema, value)
