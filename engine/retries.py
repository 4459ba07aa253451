"""Retries and error routes in the run protocol: what a failed attempt commits, who schedules
the next one, and how a lost retry is found again. The policies are
:mod:`engine.retry_policy`; the protocol calls the hooks of :class:`Retries`.

A retry is a delayed redispatch of the same task with ``attempt + 1``, never a sleeping
worker::

    worker (attempt n of task t, delivery d)                store
    ---------------------------------------------------------------------------------
    run the tool: it raises, and the node's policy retries it
    commit ATTEMPT#k#t#n (error, duration, retry_at), conditional on "slot empty"
                                         -----> exactly one copy of a duplicated hop wins
         (R1) crash here: nothing written; the redelivery runs the tool again
    dispatch hop (t, attempt n+1) delayed until retry_at (SQS DelaySeconds, at most 900 s;
         a hop that comes early is held again)
         (R2) crash here: the redelivery (same d) finds ATTEMPT#k#t#n its own and sends
              the retry without running the tool; with no redelivery, the sweeper sends
              it once retry_at + the lease has passed
    acknowledge

A copy that loses the attempt's commit is dropped: the winner scheduled the next attempt.
A failed attempt commits nothing else: no step, no task record, no state; it does not count
against the step limit (attempts have their own cap, ``max_attempts``). Once attempts are
spent (or the error is not retried), the task fails as any task does, or, with
``on_error``, completes with the error under :data:`engine.retry_policy.ERROR_KEY` and goes
to that node.

A hop of attempt n > 1 is a request like any other: it runs only if attempt n-1 is
recorded with a retry time, and not if attempt n is recorded already.

**Self-invoke mode** (``Dispatch=lambda``): Lambda's asynchronous Invoke has no delay, and
a worker must not sleep. The attempt record is the outbox: the sweeper (every minute) sends
each attempt that is due (``sweeper_delays``). A retry then starts within about a minute of
its time rather than on it: retry intervals below a minute round up to the sweeper's pass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from engine.errors import StepConflict
from engine.graph import Graph
from engine.ports import AttemptRecord, Clock, Hop, RunStore, StepQueue
from engine.retry_policy import ERROR_KEY, RetryPolicy
from engine.superstep import TaskResult

RetryOutcome = Literal["retrying", "duplicate", "recovered", "stale"]

EARLY_TOLERANCE_S = 1.0
"""A retry hop that comes earlier than this before its time is held again (SQS holds a
message at most 900 s); SQS's delays are whole seconds, so a hop may come up to one early."""


class Retries:
    """The protocol's retry hooks, over the same ports (:class:`engine.protocol.HopProtocol`
    owns one)."""

    def __init__(
        self, store: RunStore, queue: StepQueue, clock: Clock, *, lease_s: float,
        sweeper_delays: bool = False,
    ) -> None:  # fmt: skip
        self.store = store
        self.queue = queue
        self.clock = clock
        self.lease_s = lease_s
        self.sweeper_delays = sweeper_delays
        """The carrier cannot delay a hop (self-invocation): the sweeper sends due retries."""

    # -- before the tool runs ------------------------------------------------------------------
    def before_run(
        self, graph: Graph, hop: Hop, delivery_id: str, *, suspect: bool
    ) -> RetryOutcome | None:
        """Check a hop of a retried node against its attempts before its tool runs: ``None``
        to go on. Reads them only for a retry (attempt > 1) or a hop that may be a copy
        (``suspect``: a redelivery or a re-sent hop), so a first attempt costs nothing.
        A later attempt of a node that never retries was scheduled by nobody: it is stale."""
        if _policy(graph, hop) is None:
            return "stale" if hop.attempt > 1 else None
        if hop.attempt == 1 and not suspect:
            return None
        attempts = self._attempts_of(hop)
        own = attempts.get(hop.attempt)
        if own is not None:  # this attempt failed already
            if own.committed_by != delivery_id:
                return "duplicate"
            self._schedule(hop, own)  # ours, and it died before it sent the next attempt
            return "recovered"
        if hop.attempt == 1:
            return None
        previous = attempts.get(hop.attempt - 1)
        if previous is None or previous.retry_at is None:
            return "stale"  # no attempt scheduled this one
        early = previous.retry_at - self.clock()
        if early > EARLY_TOLERANCE_S and not self.sweeper_delays:
            self.queue.dispatch(replace(hop, recheck=False, delay_s=early))  # held again
            return "retrying"
        return None

    # -- after it failed -----------------------------------------------------------------------
    def after_failure(
        self, graph: Graph, hop: Hop, result: TaskResult, started: float, delivery_id: str
    ) -> RetryOutcome | TaskResult:
        """A failed attempt: schedule the next one (committing its record), or give the
        result the task ends with: the failure itself, or the error route's."""
        failure = graph.nodes[hop.node].failure
        policy = failure.retry
        if (
            policy is not None
            and hop.attempt < policy.max_attempts
            and policy.retries(result.raised)
        ):
            return self._retry(policy, hop, result, started, delivery_id)
        if failure.on_error is None:
            return result
        error: dict[str, Any] = {
            "node": hop.node, "task": hop.task_key,
            "type": result.raised.type if result.raised is not None else "Error",
            "message": result.error, "attempts": hop.attempt,
        }  # fmt: skip
        return replace(result, updates={ERROR_KEY: error}, targets=(failure.on_error,),
                       error=None, sends=(), raised=None)  # fmt: skip

    def _retry(
        self, policy: RetryPolicy, hop: Hop, result: TaskResult, started: float,
        delivery_id: str,
    ) -> RetryOutcome:  # fmt: skip
        now = self.clock()
        seed = f"{hop.run_id}:{hop.seq}:{hop.task_key}:{hop.attempt}"
        record = AttemptRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.node, index=hop.index,
            attempt=hop.attempt, tool=result.tool, error=result.error or "",
            error_type=result.raised.type if result.raised is not None else "Error",
            started_at=started, duration_ms=result.duration_ms,
            retry_at=now + policy.delay(hop.attempt, seed, result.raised),
            committed_by=delivery_id,
        )  # fmt: skip
        try:
            self.store.commit_attempt(record)
        except StepConflict:
            won = self._attempts_of(hop).get(hop.attempt)
            if won is None or won.committed_by != delivery_id:
                return "duplicate"  # another copy recorded it, and schedules the retry
            record = won
        self._schedule(hop, record)
        return "retrying"

    def _schedule(self, hop: Hop, record: AttemptRecord) -> None:
        """Send the attempt after ``record``, held until its time."""
        if record.retry_at is None:
            return
        delay = max(0.0, record.retry_at - self.clock())
        if self.sweeper_delays and delay > 0:
            return  # the sweeper sends it when due (see the module's docstring)
        self.queue.dispatch(replace(hop, attempt=record.attempt + 1, recheck=False,
                                    delay_s=delay))  # fmt: skip

    def _attempts_of(self, hop: Hop) -> dict[int, AttemptRecord]:
        return {
            a.attempt: a
            for a in self.store.list_attempts(hop.run_id, hop.seq)
            if a.node == hop.node and a.index == hop.index
        }

    # -- dead letters --------------------------------------------------------------------------
    def pending(self, graph: Graph, hop: Hop) -> bool:
        """Whether ``hop``'s task has an attempt scheduled after the one the hop carries that
        is not yet overdue (its time, plus the lease for a hop that should be on its way): a
        letter for it must not fail the run, since the task has not stopped."""
        if _policy(graph, hop) is None:
            return False
        attempts = self._attempts_of(hop)
        latest = attempts[max(attempts)] if attempts else None
        if latest is None or latest.retry_at is None or latest.attempt < hop.attempt:
            return False
        return self.clock() < latest.retry_at + self.lease_s

    # -- the sweeper ---------------------------------------------------------------------------
    def may_be_due(self, graph: Graph, nodes: list[str]) -> bool:
        """Whether the sweeper should look at a slot that is not stalled: only when it is the
        one that sends due retries, for a slot that has a retried node."""
        return self.sweeper_delays and any(graph.nodes[n].failure.retry for n in nodes)

    def swept(self, graph: Graph, hops: list[Hop], *, stalled: bool) -> list[Hop]:
        """The sweeper's hops, each as the attempt it is at: a task whose last attempt
        failed goes out as the next attempt once that is due (plus the lease when a delayed
        hop should already be on its way), else not at all; a task with no failed attempt
        goes out only if its slot is ``stalled``."""
        if not hops or not any(_policy(graph, hop) for hop in hops):
            return hops if stalled else []
        latest: dict[tuple[str, int | None], AttemptRecord] = {}
        for record in self.store.list_attempts(hops[0].run_id, hops[0].seq):
            task = (record.node, record.index)
            if task not in latest or latest[task].attempt < record.attempt:
                latest[task] = record
        grace = 0.0 if self.sweeper_delays else self.lease_s
        now = self.clock()
        due: list[Hop] = []
        for hop in hops:
            last = latest.get((hop.node, hop.index))
            if last is None or last.retry_at is None:
                due.extend([hop] if stalled else [])
            elif now >= last.retry_at + grace:
                due.append(replace(hop, attempt=last.attempt + 1))
        return due


def _policy(graph: Graph, hop: Hop) -> RetryPolicy | None:
    return graph.nodes[hop.node].failure.retry
