"""Every case of the fault plan (tests/faults/plan.py: fault x window x carrier x shape)
through the real worker handler on moto keeps the protocol's invariants: the run ends as the
in-process runner's, every task committed once, every superstep closed once, supersteps
published in order, no hop left, nothing dead-lettered, and the fault struck exactly once.

Mutation proof: each break below was applied to a copy of the tree and the plan run on it
(1-5: the 98 cases outside the map of 50, before the step kernel; 6-9: the cases of the
faults and the shape they guard; 27-30: the pause scenarios of
tests/faults/test_pause_faults.py; 33-36: the subgraph_timeout cases and the deadline race);
each turned the cases listed red, and the tree as committed is green.

1. The close without its condition: ``ConditionExpression=SLOT_FREE`` removed from both
   writes of ``DynamoRunStore.commit_step`` (functions/aws/dynamodb_store.py; the plain
   one is now ``_put_new``'s). When first measured, 59 cases red (every cancel case, the
   crash and duplicate windows of the chain, the fan-out and the join). Measured again on
   the tree of the pauses and the fold: 4 cases red, "closes per superstep: {.., 1: 2, ..}":
   race@same_hop#2 on the fan-out and on sends (SQS), race@sibling_hops#1 on the fan-out
   and the cancel shape (self-invoke). The others no longer reach the write: a suspect hop
   reads its slot first (``_taken_by``) and a closer that finds the slot taken stops; the
   condition is what holds when two closers race past those reads.
2. No re-dispatch on recovery: ``_dispatch_after`` removed from ``_after_conflict``, and
   ``_next_item`` and ``_fan_in`` from ``_after_task_conflict`` (engine/protocol.py). 20
   cases red, the run left "running": crash@after_close_commit and crash@after_publish on
   the chain, the fan-out, the join and the cancel shape, crash@after_task_commit on the
   fan-out and the join, on both carriers.
3. Dispatch before publish in ``_commit_close`` (engine/protocol.py). 6 cases red, "a
   subscriber saw supersteps out of order: [0, 2, 3, 4, 5, 1]": crash@after_dispatch on the
   chain, the fan-out and the join, on both carriers (the crashed hop's redelivery comes
   after the hops it had sent, and only then publishes its superstep).
4. No making up for a missed superstep: ``Audience.missed_previous`` always False
   (engine/ports.py), so a superstep's subscribers read before its commit are all it
   reaches. 4 cases red, "the late subscriber got supersteps [...], not [...]", the one
   committed in its window missing: subscribe@before_commit on the chain (both carriers),
   the fan-out and the join (SQS). A last step that reuses the list read before its
   commit is caught by tests/functional/test_ws_notifier.py.
5. A counted superstep's count left behind: the count's ``Update`` dropped from the
   transaction of ``DynamoRunStore.commit_task(counted=True)``, so that tasks commit and
   the count never rises. All 14 cases of map_12_counted red, the run left "running".
6. A hop believed about its graph: the ``graph_id != hop.graph_id`` comparison removed from
   ``HopProtocol._origin`` (engine/protocol.py). 8 of the 11 forge@hop cases red: the forged
   hop, naming a twin graph with the same node names, ran the twin's tool and committed
   ("hijacked" in the final state).
7. A dead letter believed: the lease check removed from ``HopProtocol.fail`` and the AWS mark
   check from ``functions.deadletter.letters.fail_run``. All 11 forge@dead_letter cases red,
   the run "failed" by a letter for its live task.
8. A cancel that does not stop a superstep: ``Slot.taken`` ignored by ``_origin``. 18 cancel_map
   cases red: "N tasks started after the cancel answered".
9. No sweeper: ``HopProtocol.sweep`` returns at once. 11 of the 31 lose@... cases red, the
   run left "running" (in the others a later hop of the same superstep, or the redelivery of
   a batch's other hops, still sends what was lost).
10. A child's end not told on recovery: ``self.subgraphs.ended`` removed from
    ``_after_conflict`` (engine/protocol.py), so the redelivered hop of a child whose last
    close committed does not tell the parent. crash@after_child_close red, the parent left
    "running" (``('running', 1, None)``).
11. The sweeper leaves a parent untold: ``Subgraphs.waiting`` (engine/subgraphs.py) skips a
    task whose child ended without telling its parent. lose@after_child_close red, the parent
    left "running".
12. Cancel not propagated: ``subgraphs.after_cancel`` removed from ``RunService.cancel_run``.
    All 10 cancel_subgraph cases red: "N tasks started after the cancel answered" (the
    children ran on to their end).
13. A child per delivery rather than per task: ``child_run_id`` random instead of derived
    from the parent's run, superstep and task. 16 cases red: every cancel_subgraph case, and
    on the subgraph shape crash@after_publish, duplicate@delivery, race@same_hop ("a task ran
    two children") and lose@after_child_close.
14. A child's completion told twice trusted: ``finish_task`` without its read of the slot and
    ``DynamoRunStore.commit_task`` without its condition (either alone is enough: the other
    catches the duplicate). duplicate@child_completion red, "a task committed twice".
The sweeper leaving a waiting parent alone while its child runs (no hop re-sent for it: it
would cost a hop per lease and change nothing) is proved on the memory adapters: with
``Subgraphs.waiting`` returning ``None``, tests/unit/test_subgraphs.py
``test_the_sweeper_leaves_a_parent_waiting_on_a_live_child_alone`` goes red.
15. The redrive's transition unconditional: both conditions (the slot free, the run failed)
    dropped from ``DynamoRunStore.commit_step``'s transaction when it moves a run out of
    ``failed`` (functions/aws/dynamodb_store.py). Both redrive_twice cases of
    tests/faults/test_time_travel_faults.py red: both redrives answered as winners (each
    condition alone holds the race: a loser finds the slot taken, or the run running).
16. A fork's retry that does not re-send its first hop: the ``dispatch_after(stored,
    recheck=True)`` of ``fork_run`` removed (engine/history.py). Both fork_dies_then_retry
    cases red: the fork left "running" at its entry.
17. A checkpoint's continuation read from ``next_nodes`` only: ``recorded`` ignoring
    ``next_node`` (engine/history.py). Both fork_of_fork cases red: the fork of a fork,
    from its parent's entry, completed at once with the entry's state.
18. A failed attempt recorded without its condition: ``DynamoRunStore.commit_attempt`` as a
    plain PutItem (functions/aws/dynamodb_store.py). 5 of the 72 retry_... cases red, "an
    attempt was recorded twice" (two copies each scheduling a retry): race@same_hop on the
    fan-out (both carriers) and the chain (self-invoke), crash@after_attempt_commit on
    self-invoke.
19. No recovery of a recorded attempt: the redelivery that finds its own attempt record
    (``Retries.before_run``) or loses the attempt's write to itself (``Retries._retry``)
    does not send the retry (engine/retries.py). 7 retry_... cases red, the run left
    "running": crash@after_attempt_commit on both shapes and both carriers, and
    crash@after_publish#2 (the crash that strikes as the retry is sent) on the chain (both
    carriers) and the fan-out (SQS).
20. A sweeper blind to attempts: ``Retries.swept`` sends every hop as attempt 1. All 4
    lose@after_attempt_commit cases red: the re-sent first attempt finds its attempt
    recorded by another delivery and stops, and the run stays "running".
A retry hop that no attempt scheduled (a forged ``attempt``) is refused by
``Retries.before_run`` (tests/unit/test_retries.py goes red without the check), and a wait
that runs before its time is caught by tests/unit/test_timers.py (4 tests red when
``Timers.before_run`` never holds a hop).
21. A delta without its base: the boundary snapshot never written (``deltas.is_boundary``
   always False, engine/deltas.py), so a read from ``base_of`` finds deltas with no full
   state before them. The plan's runs are shorter than a snapshot interval and each case's
   worker keeps the runs' states warm, so the plan stays green; the store contract catches
   it: tests/contract/test_lean_steps.py, ``test_every_superstep_reads_back_whole`` (warm
   and cold, both stores) and ``test_the_full_state_is_kept_every_k_supersteps_only`` red.
22. A delta written without proof: ``deltas.lean`` trusting any known state (its
   ``apply(before, delta) == state`` check removed) and ``DynamoRunStore._lean`` taking the
   cached state of any superstep as the one before. tests/contract/test_lean_steps.py,
   ``test_a_step_whose_state_is_not_the_state_before_plus_its_updates_is_kept_whole`` red on
   both stores (the step read back as the cached state plus its updates).
The wide map whose task summaries cannot fit in one item runs on the memory adapters
(tests/unit/test_protocol_trust.py): with ``MAX_TASK_SUMMARIES`` unbounded, it goes red.
23. A fold page committed without its condition: ``DynamoRunStore.commit_fold`` as a plain
    PutItem (functions/aws/dynamodb_folds.py). race@fold_hop on map_30_folded red: "a fold
    page was committed twice: {(1, 1): 1, (1, 2): 1, (1, 3): 2}" (both copies read the
    record at one cursor and both wrote the next).
24. A stranded fold left alone: ``Sweeper._sweep_counted`` returns 0 once a fold record
    exists (engine/sweeper.py). lose@after_fold_commit on map_30_folded red, the run left
    "running".
25. A fold hop that takes a record its own delivery wrote for a copy's: ``Folds.hop`` drops
    when ``fold.committed_by`` is its delivery id (engine/fold.py), as a hop carrying its
    cursor would drop once the cursor moved. crash@after_fold_commit on map_30_folded red,
    the run left "running" (the redelivery of the fold hop that died after its commit is the
    only one left to fold on).
26. A page merged out of merge order: ``Folded.add`` reverses each page (engine/fold.py).
    All 6 map_30_folded cases red: the final state differs from the in-process run (the
    ``append`` reducer's order). The same close, page by page or in one read, writing the
    same step record is tests/unit/test_fold.py's
    ``test_a_folded_close_writes_what_a_single_read_writes`` (order-sensitive reducers,
    conflicts and failures found across pages, summaries, items sent).
27. A pause answered without its condition: ``attribute_not_exists(answered_at)`` dropped
    from the answer's update (functions/aws/dynamodb_pauses.py ``answer``). Both
    resume_twice cases of tests/faults/test_pause_faults.py red: "a pause answered twice"
    (both identical resumes wrote their answer).
28. An answer that leaves the run paused: the header's move dropped from
    ``DynamoRunStore.answer_pause``'s transaction. 12 of the 14 pause scenarios red, the run
    left "paused" (the answered task's close cannot end a run that is not running, and the
    sweeper never looks at a paused one); resume_races_cancel stays green (the cancel ends it).
29. A cancel that cannot stop a paused run: ``cancel_run`` moving the run from ``running``
    only (engine/commands.py). tests/unit/test_pauses.py
    ``test_a_paused_run_can_be_cancelled_and_then_takes_no_answer`` red; in the fault plan
    resume_races_cancel stays green, the cancel retrying until the racing answer made the run
    running again.
30. A pause whose run is never held: the header's move dropped from
    ``DynamoRunStore.commit_pause``'s transaction *and* the redelivery's hold
    (``Pauses._hold_if_stuck`` in ``Pauses.before_run``) removed. Both crash_after_pause cases
    red: the run left "running" with its question pending. Either alone holds the run: the
    pause's own write for a superstep of one task, the redelivery (or a later task's fan-in,
    or the sweeper's look at the stalled slot) for one of several.
31. A failed child's end that skips its node's failure handling: ``HopProtocol.finish_task``
    without its ``retries.after_failure`` step (engine/protocol.py). All 16
    subgraph_on_error cases red, "the flaky task recorded no failed attempt": the run failed
    at the first child's failure, unretried (the in-process run, the same kernel, too).
32. A child that does not know its task's attempt: ``Subgraphs.enter`` links every child to
    its task's attempt 1 (engine/subgraphs.py). All 16 subgraph_on_error cases red, "the
    failed child's task took no error route: running": the second child's end is told as
    the first attempt's, whose failure is recorded already, and the task never goes on.
The sweeper looking at the child of a task's current attempt (not its first) is proved on the
memory adapters: with ``Subgraphs.waiting`` looking at attempt 1's child, tests/unit/
test_subgraph_failures.py ``test_the_sweeper_leaves_a_task_alone_while_its_retrys_child_runs``
goes red (each sweep tells the parent of the failed first child again, and sends its retry
again). In the plan that costs a duplicate hop, which the slot checks drop.
33. A subgraph node's ``timeout_s`` ignored, as before it bounded child runs: ``timeout_of``
    answers ``None`` for every node (engine/subgraph_timeouts.py), so no hop is held for the
    deadline and the sweeper never sends one. All 16 subgraph_timeout cases red, "the flaky
    task recorded no failed attempt": the child waits for ever and the parent with it (the
    in-process run, the same kernel, too).
34. A sweeper blind to deadlines: ``Waiting`` (engine/subgraphs.py) never finds a child
    overdue. The 8 self_invoke subgraph_timeout cases red, the run left "running"
    (``('running', 1, None)``): self-invocation holds no hop, the sweeper alone keeps the
    deadline; on SQS the held hop keeps it and those cases stay green.
35. A timed-out child told as any cancelled child: ``timed_out`` (engine/subgraph_timeouts.py)
    always False, so the task fails with ``SubgraphCancelled``, which no retry takes. All 16
    subgraph_timeout cases red, "the flaky task recorded no failed attempt".
36. A timeout that trusts what it read: ``Subgraphs.time_out`` tells the parent a timeout
    whatever its cancel found (engine/subgraphs.py), not the child's final record. In the
    plan the child never ends by itself; tests/faults/test_subgraph_deadline_race.py races a
    child's last hop with its deadline's hop through the worker on moto: both ``child``
    cases red (SQS and self-invocation), the task routed on a TimeoutError though the
    child's close won its slot and the child completed; and tests/unit/
    test_subgraph_timeouts.py ``test_a_timeout_that_read_the_child_running_loses_to_its_last_close``
    red on the memory adapters.
37. An attempt believed: ``Retries.before_run`` lets a hop of a node without a retry policy
    say any attempt (engine/retries.py). 14 of the 18 forge@hop cases red (all but the
    four of the retry shapes, whose nodes have a policy and check their attempts), "step
    1 b: attempt 3": the forged copy ran the task as its third attempt and committed it;
    on the subgraph shape it started a second child. tests/unit/test_protocol_trust.py
    ``test_an_attempt_no_retry_scheduled_is_never_believed`` goes red too.
38. The hooks' shortcut taken too widely: ``Graph.unhooked`` holding every node
    (engine/graph.py), so that a first delivery skips the pause and timer hooks whatever
    its node declares. 26 unit tests red (tests/unit/test_pauses.py 12, test_approval_port.py
    5, test_timers.py 4, test_subgraph_timeouts.py 3, test_code_review_approval.py 2):
    interrupt nodes and breakpoints never pause, a wait node runs before its time.
duplicate@fold_hop (copies one after the other, the same delivery id) stays green under each
of 23-25: the second copy reads the record after the first's commit and folds the next page,
so that the copies take turns rather than fold a page twice; what it guards (no page twice,
one close, nothing left running) needs copies that meet (race@fold_hop, 23) or a crash (25)
to break.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.worker import sqs as sqs_worker
from tests.faults.fleet import CaseFleet
from tests.faults.moto_speedups import faster_moto
from tests.faults.plan import CASES, Case
from tests.functional.aws_stack import AwsStack, aws_stack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    # One hop at a time within a batch, as the plan's order needs (plan.py): the worker
    # applies a batch's hops concurrently, and the faults that make hops meet (race@...)
    # make them meet deterministically.
    monkeypatch.setattr(sqs_worker, "MAX_CONCURRENT_HOPS", 1)
    with faster_moto(), aws_stack(monkeypatch) as s:
        yield s


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_run_keeps_the_protocol_invariants(stack: AwsStack, case: Case) -> None:
    # Given the worker's adapters with one fault planned at its window, on the case's carrier
    fleet = CaseFleet(stack, case)
    # When one run of the case's graph shape is driven to the end through the real worker
    fleet.run()
    # Then it ended as the in-process runner's run did, and every invariant holds
    fleet.check()
