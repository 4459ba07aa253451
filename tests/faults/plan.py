"""The fault plan: every fault, at a named window of the run protocol, on both carriers, for
every graph shape, as a table of deterministic cases.

A case is ``(fault, carrier, shape)``. A fault strikes once, at the ``nth`` occurrence of its
window in the run (counted across the run's deliveries, in the order the carrier delivers
them, which is deterministic: one worker at a time, FIFO, a failed delivery coming back only
once the queue is otherwise empty, as a redelivery after the visibility timeout or Lambda's
retry delay does). The windows are the protocol's (see ``engine/protocol.py``):

====================================  ==================================================
fault                                 what happens, on its nth occurrence
====================================  ==================================================
crash @ before_tool                   the invocation dies as the toolkit hands out the tool
crash @ before_commit                 ... as the store is asked to commit (task or close)
crash @ after_task_commit             ... just after a task record is written (window 4)
crash @ after_close_commit            ... just after a step record (a close) is written
                                      (window 2 for one task, window 5 for several)
crash @ after_publish                 ... after the events went out, before any dispatch
crash @ after_dispatch                ... just after the next hops were sent (window 3)
crash @ before_ack                    the handler returned; the invocation dies before
                                      the carrier learns it (nothing is acknowledged)
duplicate @ delivery                  the nth hop is delivered twice (same delivery id)
race @ same_hop                       the nth hop goes to two workers at the same time
race @ sibling_hops                   the nth delivery of several hops at once: each hop to
                                      its own worker, all at the same time (two last tasks
                                      of a superstep racing to close it)
reorder @ delivery                    the nth hop is held back until every other is done
throttle @ commit                     DynamoDB throttles the nth commit (PutItem or
                                      TransactWriteItems) past the SDK's retries
throttle @ fan_in_query               ... the nth fan-in read of a superstep (a Query of
                                      its tasks, or a GetItem of its count)
subscribe @ before_commit             a client subscribes (and replays the log) just before
                                      the nth commit, after its hop read the subscribers:
                                      it must still get every superstep, once the next
                                      publisher made up for the one it missed
forge @ hop                           before the nth hop, forged copies of it reach the
                                      worker: one naming a twin graph (same node names,
                                      other tools) and carrying a state and a step limit
                                      of their own, one saying it is a later attempt that
                                      no retry scheduled; they must change nothing
forge @ dead_letter                   before the nth hop, a forged dead letter for it
                                      reaches the dead-letter consumer (a raw copy on SQS,
                                      a made-up invocation record on Lambda): the live task
                                      it names must not fail its run
lose @ after_close_commit             the invocation dies just after a close and its event
                                      is gone for good (no redelivery): only the sweeper
                                      can send what the close recorded (its outbox)
lose @ after_task_commit              ... just after a task commit: the sweeper re-sends
                                      the due items, or closes the superstep itself
crash @ after_child_close             a child run's last close is written (the child ended)
                                      and the invocation dies before telling the parent:
                                      the child's redelivered hop must tell it
lose @ after_child_close              ... and its event is gone for good: the parent's
                                      sweeper must find the child ended and tell it
duplicate @ child_completion          a child's end tells its parent twice: the parent's
                                      task commits once
crash @ after_attempt_commit          ... just after a retried task's failed attempt is
                                      recorded, before its retry is sent (window R2 of
                                      engine/retries.py): the redelivery sends it
lose @ after_attempt_commit           ... and no redelivery: the delayed retry is lost,
                                      and the sweeper sends it once due
crash @ after_fold_commit             ... just after a wide superstep's fold record is
                                      written, before its next fold hop is sent (window F2
                                      of engine/fold.py): the redelivery folds on
lose @ after_fold_commit              ... and no redelivery: the fold hop is lost, and the
                                      sweeper folds on from the record
duplicate @ fold_hop                  the nth fold hop is delivered twice, one after the
                                      other (same delivery id)
race @ fold_hop                       ... to two workers at the same time: both read the
                                      record at one cursor, and one commit may win
====================================  ==================================================

The retry shapes (a chain and a fan-out whose flaky tool fails twice before it succeeds)
meet every fault at their attempts too: a duplicate of a failing hop, a crash during a
retry, a retry racing its copy; each task commits once and each attempt is recorded once.

Shapes: a chain (a loop of single-task supersteps), a fan-out, a map of 50 items capped at 5
at a time joined with a branch of its own (and the same, cancelled as its first item
commits: no item may start after the cancel), the same map uncapped over 12 items with its
fan-in counted (as a superstep with hundreds of readers counts it: engine/protocol.py), a
join of branches of unequal length, a tool-calling agent (a model step, then a superstep of
one sent task per tool call, three rounds), and a fan-out cancelled after the first task of
superstep 1 committed; items sent by a router, each on its own payload (LangGraph's
orchestrator-worker); items sent to a subgraph node, each a child run (LangGraph's ``Send`` to
a compiled subgraph), and the same cancelled as a child's first step commits (the children
must be cancelled too); a subgraph node whose child fails every attempt, retried once (a
second child run) and then routed on error; a subgraph node whose child outlives its
``timeout_s`` each attempt (the deadline cancels it), retried once, then routed on error. A
fault whose window a shape never reaches (a task commit in a chain, a child's close outside
the subgraph shapes) is not planned for it.

A map of 30 items closed by a fold of pages of 8 (``fold_above`` 8: engine/fold.py) meets the
fold's faults, and the faults around its close.

Adding a shape or a fault (a pause, a retry) is one entry in ``SHAPES`` or ``FAULTS``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CARRIERS = ("sqs", "self_invoke")

PARALLEL_ONLY = frozenset({"after_task_commit", "sibling_hops", "fan_in_query"})
LOSS_WINDOWS = frozenset({"after_close_commit", "after_task_commit"})
"""Windows only a superstep of several tasks has."""
SUBGRAPH_ONLY = frozenset({"after_child_close", "child_completion"})
"""Windows only a run with child runs has."""
RETRY_ONLY = frozenset({"after_attempt_commit"})
"""Windows only a shape with a retried task has."""
FOLD_ONLY = frozenset({"after_fold_commit", "fold_hop"})
"""Windows only a shape whose superstep closes by a fold has."""


@dataclass(frozen=True)
class Fault:
    kind: str
    window: str
    nth: int = 2

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.window}#{self.nth}"


@dataclass(frozen=True)
class Shape:
    name: str
    doc: dict[str, Any]
    input: dict[str, Any]
    parallel: bool = True
    cancel_after_task_of: int | None = None
    """Cancel the run as the first task of this superstep commits."""
    every_carrier: bool = True
    """False: each fault runs on one carrier, the carriers taking turns fault by fault."""
    counted_fan_in_above: int | None = None
    """The engine's threshold for counting a superstep's tasks; None: its default."""
    retries: bool = False
    """A node retries (the attempt windows are reached)."""
    reaches: tuple[tuple[str, int], ...] = ()
    """Windows this shape's run reaches fewer times than a fault's ``nth``, and how often:
    such a fault strikes at the last occurrence instead."""
    children: tuple[dict[str, Any], ...] = ()
    """The graphs its subgraph nodes name, created first (and run in process by name)."""
    cancel_on_child_step: bool = False
    """Cancel the run as the first step of one of its children commits (with
    ``cancel_after_task_of`` naming the superstep the cancel stops)."""
    faults: frozenset[str] | None = None
    """Only these faults (``Fault.name`` without ``#nth``); None: every fault that applies."""
    fold: tuple[int, int] | None = None
    """The engine's ``fold_above`` and ``fold_page`` (engine/fold.py); None: its defaults."""
    children_end: str | None = None
    """How its child runs end when they do not complete (each a task's attempt): ``failed``
    (each fails) or ``cancelled`` (each outlives its task's ``timeout_s``); the run goes on
    by its error route."""
    deadline_s: float | None = None
    """Its children outlive their task's ``timeout_s``: the fleet's clock moves on by this
    much each time the carrier is idle, an SQS hop held for a time is delivered once due,
    and with self-invocation the sweeper keeps the deadlines (as ``Dispatch=lambda``)."""


@dataclass(frozen=True)
class Case:
    fault: Fault
    carrier: str
    shape: Shape

    @property
    def nth(self) -> int:
        return min(self.fault.nth, dict(self.shape.reaches).get(self.fault.window, self.fault.nth))

    @property
    def id(self) -> str:
        fault = self.fault
        return f"{fault.kind}@{fault.window}#{self.nth}-{self.carrier}-{self.shape.name}"


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / "langgraph" / name).read_text())  # type: ignore[no-any-return]


LOOP_6 = {
    "name": "loop_6",
    "entry": "inc",
    "nodes": {
        "inc": {"tool": "increment", "settings": {"key": "count"}},
        "visit": {"tool": "record_visit"},
    },
    "edges": {"inc": "visit"},
    "branches": {"visit": {"cases": [{"when": "count >= 3", "to": "END"}], "default": "inc"}},
}
MAP_50_JOINED = {
    "entry": "split",
    "state": {"graded": {"reducer": "append"}, "total": {"reducer": "add"}},
    "nodes": {
        "split": {"tool": "set_values", "settings": {"values": {"started": True}}},
        "grade": {"tool": "fill", "settings": {"key": "graded", "template": "doc $doc"},
                  "map": {"over": "docs", "as": "doc", "max_concurrency": 5}},
        "count": {"tool": "emit", "settings": {"key": "total", "value": 1}},
        "done": {"tool": "set_values", "settings": {"values": {"finished": True}}},
    },
    "edges": {"split": ["grade", "count"], "done": "END"},
    "joins": {"done": ["grade", "count"]},
}  # fmt: skip


def _agent() -> dict[str, Any]:
    """The research agent (examples/research_agent.json) in its canonical form: a model node,
    its tool node, and the loop; a round of two tool calls is a superstep of two sent tasks."""
    from engine.validation import build_graph

    doc = json.loads((EXAMPLES / "research_agent.json").read_text())
    return build_graph(doc).to_dict()


MAP_12_COUNTED = {
    **MAP_50_JOINED,
    "nodes": {
        **MAP_50_JOINED["nodes"],  # type: ignore[dict-item]
        "grade": {"tool": "fill", "settings": {"key": "graded", "template": "doc $doc"},
                  "map": {"over": "docs", "as": "doc"}},
    },
}  # fmt: skip

SUBJECTS = {"subjects": ["cats", "dogs", "owls"]}
CANCEL_SUBGRAPH_FAULTS = frozenset(
    {"crash@before_tool", "crash@before_commit", "crash@after_publish", "duplicate@delivery",
     "reorder@delivery"}
)  # fmt: skip

QUICK_RETRY = {"initial_interval_s": 0, "jitter": False}
RETRY_CHAIN = {
    "entry": "call",
    "nodes": {"call": {"tool": "flaky", "retry": QUICK_RETRY}, "visit": {"tool": "record_visit"}},
    "edges": {"call": "visit", "visit": "END"},
}
RETRY_FAN_OUT = {
    "entry": "start",
    "nodes": {
        "start": {"tool": "record_visit"},
        "call": {"tool": "flaky", "retry": QUICK_RETRY},
        "other": {"tool": "set_values", "settings": {"values": {"other": True}}},
    },
    "edges": {"start": ["call", "other"], "call": "END", "other": "END"},
}

# A subgraph node whose child always fails: retried once (a second child run), then routed on
# error with the child's failure in the state (engine/subgraphs.py, engine/retries.py).
FAILING_CHILD = {
    "name": "failing child",
    "entry": "call",
    "nodes": {"call": {"tool": "flaky", "settings": {"succeed_on": 0}}},
    "edges": {"call": "END"},
}
SUBGRAPH_ON_ERROR = {
    "entry": "start",
    "nodes": {
        "start": {"tool": "record_visit"},
        "ask": {"graph": "failing child", "retry": {**QUICK_RETRY, "max_attempts": 2},
                "on_error": "sorry"},
        "sorry": {"tool": "set_values", "settings": {"values": {"apologised": True}}},
    },
    "edges": {"start": "ask", "ask": "END", "sorry": "END"},
}  # fmt: skip
SUBGRAPH_ON_ERROR_FAULTS = frozenset(
    {"crash@after_child_close", "lose@after_child_close", "duplicate@child_completion",
     "crash@after_attempt_commit", "lose@after_attempt_commit", "crash@after_close_commit",
     "duplicate@delivery", "race@same_hop"}
)  # fmt: skip

# A subgraph node whose child never ends by itself (it asks a question nobody answers): its
# timeout_s cancels each child, the TimeoutError is retried once, then routed on error
# (engine/subgraph_timeouts.py).
CHILD_TIMEOUT_S = 0.2
UNANSWERED_CHILD = {
    "name": "unanswered child",
    "entry": "ask",
    "nodes": {"ask": {"interrupt": {"prompt": "Anyone there?"}}},
    "edges": {"ask": "END"},
}
SUBGRAPH_TIMEOUT = {
    "entry": "start",
    "nodes": {
        "start": {"tool": "record_visit"},
        "wait": {"graph": "unanswered child", "timeout_s": CHILD_TIMEOUT_S, "on_error": "sorry",
                 "retry": {**QUICK_RETRY, "max_attempts": 2, "retry_on": ["TimeoutError"]}},
        "sorry": {"tool": "set_values", "settings": {"values": {"apologised": True}}},
    },
    "edges": {"start": "wait", "wait": "END", "sorry": "END"},
}  # fmt: skip
SUBGRAPH_TIMEOUT_FAULTS = SUBGRAPH_ON_ERROR_FAULTS

FOLD_FAULTS = frozenset(
    {"crash@after_fold_commit", "lose@after_fold_commit", "duplicate@fold_hop", "race@fold_hop",
     "crash@after_close_commit", "lose@after_task_commit"}
)  # fmt: skip

SHAPES = (
    Shape("chain", LOOP_6, {}, parallel=False),
    Shape("retry_chain", RETRY_CHAIN, {}, parallel=False, retries=True),
    Shape("retry_fan_out", RETRY_FAN_OUT, {}, retries=True),
    Shape("sends", _example("orchestrator_worker.json"), {"topic": "tides"}, every_carrier=False),
    # A router sends each subject to a subgraph node: three child runs of two steps each.
    Shape(
        "subgraph",
        _example("subgraph_send.json"),
        SUBJECTS,
        every_carrier=False,
        children=(_example("subgraph_joke.json"),),
    ),
    # A child that fails each attempt: the parent's task retries it (a new child run), then
    # takes its error route.
    Shape(
        "subgraph_on_error",
        SUBGRAPH_ON_ERROR,
        {},
        parallel=False,
        retries=True,
        children=(FAILING_CHILD,),
        children_end="failed",
        faults=SUBGRAPH_ON_ERROR_FAULTS,
    ),
    # A child that outlives its task's timeout (it waits for an answer nobody gives): the
    # deadline cancels it and fails the task with a TimeoutError, retried once (a second
    # child, timed out too), then routed on error.
    Shape(
        "subgraph_timeout",
        SUBGRAPH_TIMEOUT,
        {},
        parallel=False,
        retries=True,
        children=(UNANSWERED_CHILD,),
        children_end="cancelled",
        faults=SUBGRAPH_TIMEOUT_FAULTS,
        deadline_s=CHILD_TIMEOUT_S + 1,
    ),
    # Cancelled as a child's first step commits: the parent's superstep 1 waits on its
    # children; the cancel takes its slot and must cancel every child.
    Shape(
        "cancel_subgraph",
        _example("subgraph_send.json"),
        SUBJECTS,
        children=(_example("subgraph_joke.json"),),
        cancel_after_task_of=1,
        cancel_on_child_step=True,
        faults=CANCEL_SUBGRAPH_FAULTS,
    ),
    Shape("fan_out", _example("fanout_reducer.json"), {"aggregate": []}),
    # Each of the map's 51 task commits reads every task of its superstep (the fan-in), so
    # on moto a run costs seconds: each fault runs on it once, the carriers taking turns.
    Shape("map_50", MAP_50_JOINED, {"docs": list(range(50))}, every_carrier=False),
    # Its superstep 1 has 13 readers (12 items and count): above 4, its tasks count.
    Shape(
        "map_12_counted",
        MAP_12_COUNTED,
        {"docs": list(range(12))},
        every_carrier=False,
        counted_fan_in_above=4,
    ),
    # Its superstep 1 (30 items and count) closes by a fold of 4 pages of 8: 3 fold records,
    # the last page closing.
    Shape(
        "map_30_folded",
        MAP_12_COUNTED,
        {"docs": list(range(30))},
        every_carrier=False,
        fold=(8, 8),
        faults=FOLD_FAULTS,
    ),
    Shape("join_unequal", _example("join_unequal.json"), {"aggregate": []}),
    # A model step and its tool-call tasks (sent, one per call) delivered twice, crashing
    # after their commit...: each message is appended once (its id is its task's).
    Shape("agent", _agent(), {}, every_carrier=False),
    # Cancelled once b (or c) of superstep 1 committed: its only close by a worker is
    # superstep 0's, and only that close dispatches.
    # Cancelled as the first item of its capped map commits (superstep 1): the items queued
    # behind it, and those each commit would start, must not run.
    Shape(
        "cancel_map",
        MAP_50_JOINED,
        {"docs": list(range(50))},
        cancel_after_task_of=1,
        every_carrier=False,
        reaches=(
            ("after_close_commit", 1),
            ("after_publish", 1),
            ("after_dispatch", 1),
            ("after_task_commit", 1),
        ),
    ),
    Shape(
        "cancel",
        _example("fanout_reducer.json"),
        {"aggregate": []},
        cancel_after_task_of=1,
        # Its other task of superstep 1 never starts if its slot check began after the
        # cancel answered (one delivered at the same time may have checked before).
        reaches=(
            ("after_close_commit", 1),
            ("after_publish", 1),
            ("after_dispatch", 1),
            ("after_task_commit", 1),
        ),
    ),
)

FAULTS = (
    Fault("crash", "before_tool"),
    Fault("crash", "before_commit"),
    Fault("crash", "after_task_commit"),
    Fault("crash", "after_close_commit"),
    Fault("crash", "after_publish"),
    Fault("crash", "after_dispatch"),
    Fault("crash", "before_ack"),
    Fault("duplicate", "delivery", nth=3),
    Fault("race", "same_hop"),
    Fault("race", "sibling_hops", nth=1),
    Fault("reorder", "delivery"),
    Fault("throttle", "commit"),
    Fault("throttle", "fan_in_query", nth=1),
    Fault("subscribe", "before_commit"),
    Fault("forge", "hop"),
    Fault("forge", "dead_letter"),
    Fault("lose", "after_close_commit", nth=1),
    Fault("lose", "after_task_commit", nth=1),
    Fault("crash", "after_child_close", nth=1),
    Fault("lose", "after_child_close", nth=1),
    Fault("duplicate", "child_completion", nth=1),
    Fault("crash", "after_attempt_commit", nth=1),
    Fault("lose", "after_attempt_commit", nth=1),
    Fault("crash", "after_fold_commit"),
    Fault("lose", "after_fold_commit"),
    Fault("duplicate", "fold_hop", nth=1),
    Fault("race", "fold_hop", nth=2),
)


def applies(fault: Fault, carrier: str, shape: Shape) -> bool:
    if not shape.parallel and fault.window in PARALLEL_ONLY:
        return False
    if fault.window in SUBGRAPH_ONLY and not shape.children:
        return False
    if not shape.retries and fault.window in RETRY_ONLY:
        return False
    if shape.fold is None and fault.window in FOLD_ONLY:
        return False
    if shape.faults is not None and f"{fault.kind}@{fault.window}" not in shape.faults:
        return False
    return shape.every_carrier or carrier == CARRIERS[FAULTS.index(fault) % len(CARRIERS)]


CASES = [
    Case(fault, carrier, shape)
    for shape in SHAPES
    for fault in FAULTS
    for carrier in CARRIERS
    if applies(fault, carrier, shape)
]
