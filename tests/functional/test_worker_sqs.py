"""The step worker handler, fed real-shaped SQS batches from the step queue on moto.

Runs are driven hop by hop through SQS (``infra.stack.event_source`` builds the events from the
queue), committed to the DynamoDB store, and compared with the in-process runner.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from engine.errors import StepConflict
from engine.runner import InProcessRunner
from engine.validation import build_graph
from functions.observability import LEFT_OUT_CONTEXT_KEYS, logger
from functions.worker.handler import handler
from tests.events import load_event
from tests.functional.aws_stack import (
    AwsStack,
    aws_stack,
    code_review_graph,
    lambda_context,
    sample_code,
)

LOOP = {
    "name": "count_to_20",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment", "settings": {"key": "count"}}},
    "branches": {"inc": {"cases": [{"when": "count >= 20", "to": "END"}], "default": "inc"}},
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with aws_stack(monkeypatch) as s:
        yield s


def reference(stack: AwsStack, doc: dict[str, Any], state: dict[str, Any], **kw: Any) -> Any:
    graph = build_graph(doc, set(stack.service.tools.names()))
    return InProcessRunner(stack.service.tools, **kw).run(graph, state)


def test_the_sample_batch_commits_each_hop_and_dispatches_its_successor(stack: AwsStack) -> None:
    # Given two started runs, and the sample batch patched to carry their first hops
    svc = stack.service
    graph = svc.create_graph(code_review_graph())[0]
    runs = [svc.start_run(graph.graph_id, {"code": sample_code()})[0] for _ in range(2)]
    event = load_event("sqs_step_batch")
    for record, run in zip(event["Records"], runs, strict=True):
        hop = json.loads(record["body"])
        hop.update(run_id=run.run_id, graph_id=graph.graph_id, state={"code": sample_code()})
        record["body"] = json.dumps(hop)
    # When the worker handles the batch
    response = handler(event, lambda_context())
    # Then nothing failed, step 0 of both runs is committed by its message
    assert response == {"batchItemFailures": []}
    for record, run in zip(event["Records"], runs, strict=True):
        step = svc.store.get_step(run.run_id, 0)
        assert step is not None and step.node == "extract" and step.status == "ok"
        assert step.committed_by == record["messageId"]
    # And the successors are on the step queue (next to the hops start_run sent, which the
    # worker will drop as duplicates of the committed steps)
    bodies = [json.loads(m["Body"]) for m in stack.messages("StepQueue")]
    assert sorted((b["run_id"], b["seq"], b["node"]) for b in bodies if b["seq"] == 1) == sorted(
        (r.run_id, 1, "complexity") for r in runs
    )


def test_a_run_driven_through_sqs_ends_as_the_in_process_runner_does(stack: AwsStack) -> None:
    # Given the code-review graph and its sample input
    svc = stack.service
    graph = svc.create_graph(code_review_graph())[0]
    run = svc.start_run(graph.graph_id, {"code": sample_code()})[0]
    # When the step queue is drained through the worker
    handled = stack.drain(stack.worker_source())
    # Then the run completed with the reference's state, one committed step per hop
    expected = reference(stack, code_review_graph(), {"code": sample_code()})
    final = stack.run(run.run_id)
    assert (final.status, final.state, final.steps) == ("completed", expected.state, expected.steps)
    assert handled == expected.steps
    steps = stack.steps(run.run_id)
    assert [s.seq for s in steps] == list(range(expected.steps))
    assert [s.node for s in steps] == [e["node"] for e in expected.log] or not expected.log
    assert stack.messages("StepDLQ") == []


def test_a_tool_error_fails_the_step_and_the_run_with_its_reason(stack: AwsStack) -> None:
    # Given code that does not parse
    svc = stack.service
    graph = svc.create_graph(code_review_graph())[0]
    run = svc.start_run(graph.graph_id, {"code": "def broken(:\n"})[0]
    # When the worker runs it
    stack.drain(stack.worker_source())
    # Then the first step failed with the tool's message, and so did the run
    final = stack.run(run.run_id)
    assert final.status == "failed"
    assert final.error is not None and "extract_functions" in final.error
    assert "does not parse" in final.error
    [step] = stack.steps(run.run_id)
    assert (step.status, step.error, step.run_status) == ("failed", final.error, "failed")
    assert step.state == {"code": "def broken(:\n"}


def test_the_step_limit_fails_the_run_with_a_reason(stack: AwsStack) -> None:
    # Given a 20-step loop started with a limit of 5 steps
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    run = svc.start_run(graph.graph_id, {}, max_steps=5)[0]
    # When it runs
    stack.drain(stack.worker_source())
    # Then it stops at 5 committed steps, failed with the step-limit reason
    final = stack.run(run.run_id)
    assert (final.status, final.steps, final.state) == ("failed", 5, {"count": 5})
    assert final.error is not None and "step limit reached" in final.error


def test_a_state_above_the_limit_fails_the_run_and_keeps_the_last_committed_state(
    stack: AwsStack,
) -> None:
    # Given a run whose input is 300 KB (under the default 350 KB) and whose second step
    # would add 60 KB more (so its hop carries no inline state: the worker reads step 0)
    svc = stack.service
    doc = {
        "name": "bloat",
        "entry": "mark",
        "nodes": {
            "mark": {"tool": "set_values", "settings": {"values": {"marked": True}}},
            "bloat": {"tool": "set_values", "settings": {"values": {"extra": "y" * 60_000}}},
        },
        "edges": {"mark": "bloat", "bloat": "END"},
    }
    graph = svc.create_graph(doc)[0]
    run = svc.start_run(graph.graph_id, {"blob": "x" * 300_000})[0]
    # When it runs
    stack.drain(stack.worker_source())
    # Then the run failed on step 1 with the size in the reason
    final = stack.run(run.run_id)
    assert final.status == "failed"
    assert final.error is not None and "above the limit of 350000" in final.error
    # And the state is the one step 0 committed, intact
    assert final.state == {"blob": "x" * 300_000, "marked": True}
    steps = stack.steps(run.run_id)
    assert [(s.seq, s.status) for s in steps] == [(0, "ok"), (1, "failed")]
    assert steps[1].state == steps[0].state


def test_cancelling_mid_run_commits_no_further_step(stack: AwsStack) -> None:
    # Given a loop run whose first step has been processed (hop 1 is on the queue)
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    run = svc.start_run(graph.graph_id, {})[0]
    source = stack.worker_source(batch_size=1)
    assert source.poll_once().succeeded == 1
    # When it is cancelled and the queue drained
    svc.cancel_run(run.run_id, "stop it")
    stack.drain(source)
    # Then slot 1 holds the cancellation and nothing came after it
    final = stack.run(run.run_id)
    assert (final.status, final.error, final.state) == ("cancelled", "stop it", {"count": 1})
    assert [(s.seq, s.status) for s in stack.steps(run.run_id)] == [(0, "ok"), (1, "cancelled")]
    assert stack.messages("StepQueue") == []


def test_a_hop_that_keeps_failing_reaches_the_dlq_and_its_run_is_failed(
    stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose step commits fail with an unexpected error (ending a run still works)
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    run = svc.start_run(graph.graph_id, {})[0]
    commit = svc.store.commit_step

    def broken_commit(step: Any, end: Any = None) -> None:
        if end is None:
            raise RuntimeError("the disk is on fire")
        commit(step, end)

    monkeypatch.setattr(svc.store, "commit_step", broken_commit)
    # When the queue is drained (failed messages come back at once)
    handled = stack.drain(stack.worker_source())
    # Then the hop was received maxReceiveCount (5) times, then moved to the DLQ by SQS
    assert handled == 5
    [dead] = stack.messages("StepDLQ")
    assert json.loads(dead["Body"])["run_id"] == run.run_id
    # And the run is failed (not left running) with a reason naming the cause
    final = stack.run(run.run_id)
    assert final.status == "failed"
    assert final.error is not None
    assert "dead-letter queue" in final.error and "the disk is on fire" in final.error
    [step] = stack.steps(run.run_id)
    assert (step.seq, step.status, step.run_status) == (0, "failed", "failed")


def test_a_malformed_message_fails_alone_and_reaches_the_dlq(stack: AwsStack) -> None:
    # Given a loop run's first hop and, next to it, a message that is not a hop
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    run = svc.start_run(graph.graph_id, {})[0]
    stack.sqs.send_message(QueueUrl=stack.urls["StepQueue"], MessageBody='{"run_id": 7}')
    # When the queue is drained
    stack.drain(stack.worker_source())
    # Then the run is unaffected and the malformed message ends in the DLQ
    assert stack.run(run.run_id).status == "completed"
    [dead] = stack.messages("StepDLQ")
    assert dead["Body"] == '{"run_id": 7}'


def test_a_redelivered_hop_recovers_a_successor_its_first_delivery_never_sent(
    stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker that committed step 0 and died before dispatching hop 1
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    run = svc.start_run(graph.graph_id, {})[0]
    dispatch = svc.queue.dispatch
    calls: list[Any] = []

    def dying_dispatch(hop: Any) -> None:
        calls.append(hop)
        if len(calls) == 1:
            raise ConnectionError("SQS unreachable")
        dispatch(hop)

    monkeypatch.setattr(svc.queue, "dispatch", dying_dispatch)
    source = stack.worker_source(batch_size=1)
    assert source.poll_once().failed == 1
    assert svc.store.get_step(run.run_id, 0) is not None
    # When the hop is redelivered and the queue drained
    stack.drain(source)
    # Then the redelivery re-sent hop 1 and the run completed with each step once
    final = stack.run(run.run_id)
    assert (final.status, final.state, final.steps) == ("completed", {"count": 20}, 20)
    with pytest.raises(StepConflict):
        svc.store.commit_step(stack.steps(run.run_id)[0])


def test_a_hop_whose_tool_cannot_finish_in_the_time_left_is_retried_not_started(
    stack: AwsStack,
) -> None:
    # Given a hop of a node that may take 20 s, delivered to an invocation with 3 s left
    svc = stack.service
    graph = {"entry": "inc", "nodes": {"inc": {"tool": "increment", "timeout_s": 20}},
             "edges": {"inc": "END"}}  # fmt: skip
    run = svc.start_run(svc.create_graph(graph)[0].graph_id, {})[0]
    event = load_event("sqs_step_batch")
    record = event["Records"][0]
    record["body"] = stack.messages("StepQueue")[0]["Body"]
    event["Records"] = [record]
    context = lambda_context()
    context.timeout_s = 3.0
    # When the worker handles it
    response = handler(event, context)
    # Then the delivery failed (it comes back in a fresh invocation) and nothing ran
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert svc.store.get_step(run.run_id, 0) is None
    # And a fresh invocation runs it
    assert handler(event, lambda_context()) == {"batchItemFailures": []}
    assert svc.store.get_step(run.run_id, 0) is not None


def test_the_worker_logs_each_hop_without_the_context_keys_left_out(stack: AwsStack) -> None:
    # Given a started run, its first hop in an SQS batch, and the worker's log lines kept
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    run = svc.start_run(graph.graph_id, {"count": 18})[0]
    event = load_event("sqs_step_batch")
    event["Records"] = event["Records"][:1]
    hop = json.loads(event["Records"][0]["body"])
    hop.update(run_id=run.run_id, graph_id=graph.graph_id, node="inc", state={"count": 18})
    event["Records"][0]["body"] = json.dumps(hop)
    lines = io.StringIO()
    logger.registered_handler.setStream(lines)
    try:
        # When the worker handles it
        assert handler(event, lambda_context()) == {"batchItemFailures": []}
    finally:
        logger.registered_handler.setStream(sys.stdout)
    # Then its line says which invocation applied which hop, without the ARN and memory size
    applied = [json.loads(line) for line in lines.getvalue().splitlines() if "hop applied" in line]
    assert len(applied) == 1 and applied[0]["run_id"] == run.run_id
    assert {"function_name", "function_request_id", "cold_start"} <= set(applied[0])
    assert not set(applied[0]) & set(LEFT_OUT_CONTEXT_KEYS)
