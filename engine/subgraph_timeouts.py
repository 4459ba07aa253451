"""A subgraph node's ``timeout_s``: how long its task waits for its child run.

The deadline is a function of the records alone: the child's start (its header's
``created_at``, which is when its task started) plus its node's ``timeout_s``. Each attempt
of the task runs a child of its own (:mod:`engine.subgraphs`), and so has a deadline of its
own. Nothing is written to wait; the deadline is kept as a wait node's time is
(:mod:`engine.timers`)::

    hop of task t, attempt n (superstep k)        child run n                    store
    ---------------------------------------------------------------------------------------
    create child n, start it
    SQS: send t's hop again, held until the deadline (DelaySeconds, at most 900 s: a hop
         that comes before it is held again); self-invocation: nothing (below)
    "waiting"
                                                  hops, supersteps ...
    t's held hop comes: child n still running, its deadline passed
    cancel child n: a cancelled step in its next free slot and the header moved, one
    conditional write (engine/commands.py), the reason saying the deadline passed
                                                  ... or its last close takes that slot first
         exactly one of the two wins: the child ends completed, failed or cancelled, never
         both, and never left running
         (T1) crash here: child n has ended and t is untold: the held hop's redelivery (or
              the sweeper) finds the child ended and tells t, as for any child's end
    tell the parent from child n's final record (Subgraphs.tell_parent): the conditional
    commit of t as delivery "child:<child n>", whoever tells it -------------> TASK#k#t
                                                                   (or STEP#k, ATTEMPT#k#t#n)

The task's result is read from the child's final record, so every teller (the child's own
end, the held hop, its redelivery, the sweeper) commits the same one: completed, its
output; cancelled with this module's reason, a ``TimeoutError`` (:data:`TIMED_OUT`, the
error a tool's deadline raises); failed or cancelled otherwise, as before. The node's
``retry`` (``retry_on: ["TimeoutError"]``, as for a tool's timeout) starts attempt n+1, a
new child with a deadline of its own; its ``on_error`` routes with the error under
``error``.

Self-invocation cannot hold a hop: the sweeper, which looks at every running run each pass
(a parent waiting on a child is ``running``), sends t's hop once the deadline passed, and
looks at a slot with a timed subgraph node even while it is not stalled (so a timeout
happens within a pass of its time). With SQS the sweeper sends it too, once the lease after
the deadline passed as well: the held hop should have come by then.

A graph's ``defaults.timeout_s`` (a tool's deadline) does not bound child runs: only a
subgraph node's own ``timeout_s`` does, and it is not bound by the worker's function timeout
(no worker waits for a child).
"""

from __future__ import annotations

from dataclasses import replace

from engine.graph import Graph, Node
from engine.pauses import SQS_MAX_DELAY_S
from engine.ports import Clock, Hop, RunRecord, StepQueue
from engine.retry_policy import Raised, raised_from

TIMED_OUT: Raised = raised_from(TimeoutError())
"""What a task whose child outlived its node's ``timeout_s`` raised, as its node's failure
handling sees it: the same as a tool's deadline (``TimeoutError``, an ``OSError``: not
retried unless ``retry_on`` names it)."""


def timed_out_reason(timeout_s: float) -> str:
    """The reason a child cancelled at its deadline ends with (its header's ``error``): how
    its parent's task tells a timeout from any other cancel."""
    return f"its parent's task waited for it longer than its timeout_s of {timeout_s:g} s"


def timeout_of(node: Node) -> float | None:
    """A subgraph node's ``timeout_s`` (``None``: its task waits as long as its child runs)."""
    return node.failure.timeout_s if node.subgraph is not None else None


def timed_out(node: Node, child: RunRecord) -> bool:
    """Whether ``child`` ended because its parent's task passed its deadline: cancelled with
    :func:`timed_out_reason` (a child whose last close won the race ended otherwise)."""
    timeout = timeout_of(node)
    return (
        timeout is not None
        and child.status == "cancelled"
        and child.error == timed_out_reason(timeout)
    )


def timeout_error(child: RunRecord, timeout_s: float) -> str:
    return (f"subgraph run {child.run_id} did not end within the node's timeout_s of "
            f"{timeout_s:g} s: cancelled")  # fmt: skip


class ChildDeadlines:
    """The deadlines of a run's subgraph tasks (:class:`engine.subgraphs.Subgraphs` owns
    one)."""

    def __init__(
        self, queue: StepQueue, clock: Clock, *, lease_s: float, sweeper_delays: bool
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.lease_s = lease_s
        self.sweeper_delays = sweeper_delays

    def passed(self, node: Node, child: RunRecord, grace: float = 0.0) -> bool:
        """Whether a running ``child``'s deadline (plus ``grace``) has passed."""
        timeout = timeout_of(node)
        return timeout is not None and self.clock() >= child.created_at + timeout + grace

    def overdue(self, node: Node, child: RunRecord) -> bool:
        """For the sweeper: whether it should send the task's hop. At the deadline when it
        is what keeps deadlines (self-invocation); else once the lease after it passed too
        (the held hop should have come by then)."""
        return self.passed(node, child, 0.0 if self.sweeper_delays else self.lease_s)

    def hold(self, node: Node, hop: Hop, child: RunRecord, *, created: bool) -> None:
        """Send the task's hop again, held until its child's deadline (SQS holds a message at
        most 900 s: a hop that comes before the deadline is held again). Only where a hop
        can be held, for a timed node, by the hop that created the child or a plain hop
        (a held one, come early); a re-sent copy finds the held hop still on its way."""
        timeout = timeout_of(node)
        if timeout is None or self.sweeper_delays or (hop.recheck and not created):
            return
        delay = min(child.created_at + timeout - self.clock(), SQS_MAX_DELAY_S)
        self.queue.dispatch(replace(hop, recheck=False, delay_s=max(delay, 0.001)))

    def may_be_due(self, graph: Graph, nodes: list[str]) -> bool:
        """Whether the sweeper should look at a slot that is not stalled: only when it keeps
        the deadlines (self-invocation), for a slot with a timed subgraph node."""
        return self.sweeper_delays and any(timeout_of(graph.nodes[n]) for n in nodes)
