"""The worker with ``Dispatch=lambda``: hops travel as asynchronous self-invocations.

moto's Lambda runs functions in Docker, so the Lambda client is a real boto3 client under
botocore's ``Stubber``: every Invoke the worker makes is checked (function, invocation type)
and its payload is fed back to the handler, as Lambda would deliver it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from engine.errors import TransientStoreError
from engine.runner import InProcessRunner
from engine.validation import build_graph
from functions.aws import clients
from functions.aws.dispatch import LambdaStepQueue
from functions.worker import hops, self_invoke
from functions.worker.handler import handler
from tests.events import load_event
from tests.functional.aws_stack import (
    REGION,
    AwsStack,
    aws_stack,
    code_review_graph,
    lambda_context,
    sample_code,
)

WORKER = "hopgraph-worker"
LOOP = {
    "name": "count_to_3",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment"}},
    "branches": {"inc": {"cases": [{"when": "count >= 3", "to": "END"}], "default": "inc"}},
}


class LambdaInvokes:
    """A stubbed Lambda client: expects ``Event`` invokes of the worker, keeps the payloads."""

    def __init__(self) -> None:
        self.client = boto3.client("lambda", region_name=REGION)
        self.stubber = Stubber(self.client)
        self.payloads: list[dict[str, Any]] = []
        self.client.meta.events.register("provide-client-params.lambda.Invoke", self._keep)
        self.stubber.activate()

    def _keep(self, params: dict[str, Any], **_: Any) -> None:
        self.payloads.append(json.loads(params["Payload"]))

    def expect(self, n: int, status: int = 202) -> None:
        expected = {"FunctionName": WORKER, "InvocationType": "Event", "Payload": ANY}
        for _ in range(n):
            self.stubber.add_response("invoke", {"StatusCode": status}, expected)

    def deliver_all(self) -> list[Any]:
        """Invoke the handler with each payload (and those they cause) as Lambda would."""
        results = []
        while self.payloads:
            results.append(handler(self.payloads.pop(0), lambda_context(WORKER)))
        return results


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    monkeypatch.setattr(self_invoke, "RETRY_BACKOFF_S", 0.0)
    with aws_stack(monkeypatch, dispatch="lambda", step_max_receives="3") as s:
        yield s


@pytest.fixture
def invokes(stack: AwsStack) -> LambdaInvokes:
    stub = LambdaInvokes()
    clients.override("lambda", stub.client)
    return stub


def test_lambda_step_queue_sends_one_event_invoke_per_hop(
    stack: AwsStack, invokes: LambdaInvokes
) -> None:
    # Given the queue the worker dispatches through
    queue = stack.service.queue
    assert isinstance(queue, LambdaStepQueue)
    hop = hops.parse_hop(load_event("worker_self_invoke")["hop"])
    invokes.expect(1)
    # When a hop is dispatched
    queue.dispatch(hop)
    # Then Lambda got exactly one asynchronous invoke of the worker with the marked payload
    invokes.stubber.assert_no_pending_responses()
    assert invokes.payloads == [{"hopgraph": "hop", "hop": hop.to_dict()}]


def test_an_invoke_lambda_refuses_raises(stack: AwsStack, invokes: LambdaInvokes) -> None:
    # Given Lambda throttling the invoke
    invokes.stubber.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
    hop = hops.parse_hop(load_event("worker_self_invoke")["hop"])
    # When a hop is dispatched, Then the error reaches the caller (its message is retried)
    with pytest.raises(invokes.client.exceptions.TooManyRequestsException):
        stack.service.queue.dispatch(hop)


def test_a_run_driven_by_self_invocation_ends_as_the_in_process_runner_does(
    stack: AwsStack, invokes: LambdaInvokes
) -> None:
    # Given the code-review graph, and one invoke expected per hop of the reference run
    svc = stack.service
    graph_record, _ = svc.create_graph(code_review_graph())
    graph = build_graph(code_review_graph(), set(svc.tools.names()))
    expected = InProcessRunner(svc.tools).run(graph, {"code": sample_code()})
    invokes.expect(expected.steps)
    # When the run starts and each invoke is delivered to the handler
    run = svc.start_run(graph_record.graph_id, {"code": sample_code()})[0]
    results = invokes.deliver_all()
    # Then every hop was applied once and the run ended with the reference's state
    invokes.stubber.assert_no_pending_responses()
    assert results == [{"result": "committed"}] * (expected.steps - 1) + [{"result": "finished"}]
    final = stack.run(run.run_id)
    assert (final.status, final.state, final.steps) == ("completed", expected.state, expected.steps)


def test_the_sample_event_is_applied_with_the_request_id_as_delivery_id(
    stack: AwsStack, invokes: LambdaInvokes
) -> None:
    # Given a started run (its first invoke expected) and the sample event carrying its hop
    svc = stack.service
    graph = svc.create_graph(code_review_graph())[0]
    invokes.expect(2)
    run = svc.start_run(graph.graph_id, {"code": sample_code()})[0]
    event = load_event("worker_self_invoke")
    event["hop"].update(run_id=run.run_id, graph_id=graph.graph_id)
    # When Lambda invokes the worker with it
    context = lambda_context(WORKER, request_id="6a1f0d0e-7d7b-4a47-9d5e-0b7e3c1f2a11")
    assert handler(event, context) == {"result": "committed"}
    # Then step 0 is committed by that request, and hop 1 was invoked
    step = svc.store.get_step(run.run_id, 0)
    assert step is not None and step.committed_by == context.aws_request_id
    assert [(p["hop"]["seq"], p["hop"]["node"]) for p in invokes.payloads[1:]] == [
        (1, "complexity")
    ]


def test_a_failed_self_invoked_hop_is_reinvoked_with_the_same_delivery_id(
    stack: AwsStack, invokes: LambdaInvokes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that is throttled once
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    commit = svc.store.commit_step
    throttled: list[int] = []

    def throttled_once(step: Any, end: Any = None) -> None:
        if not throttled:
            throttled.append(step.seq)
            raise TransientStoreError("DynamoDB is busy")
        commit(step, end)

    monkeypatch.setattr(svc.store, "commit_step", throttled_once)
    invokes.expect(4)  # the first hop, its re-invoke, then hops 1 and 2
    run = svc.start_run(graph.graph_id, {})[0]
    first = invokes.payloads.pop(0)
    context = lambda_context(WORKER)
    # When the first invocation fails on the commit
    assert handler(first, context) == {"result": "retrying"}
    # Then the worker invoked itself again: same hop, same delivery id, attempt 2
    [again] = invokes.payloads
    assert again == {**first, "delivery_id": context.aws_request_id, "attempt": 2}
    # And that delivery commits the step under the first delivery's id; the run completes
    invokes.deliver_all()
    assert svc.store.get_step(run.run_id, 0).committed_by == context.aws_request_id  # type: ignore[union-attr]
    assert stack.run(run.run_id).status == "completed"


def test_a_self_invoked_hop_that_keeps_failing_fails_its_run_and_goes_to_the_dlq(
    stack: AwsStack, invokes: LambdaInvokes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given commits that always fail unexpectedly (ending a run still works), limit 3
    svc = stack.service
    graph = svc.create_graph(LOOP)[0]
    commit = svc.store.commit_step

    def broken_commit(step: Any, end: Any = None) -> None:
        if end is None:
            raise RuntimeError("the disk is on fire")
        commit(step, end)

    monkeypatch.setattr(svc.store, "commit_step", broken_commit)
    invokes.expect(4)  # the first hop, then attempts 2, 3 and the dead-letter invocation
    run = svc.start_run(graph.graph_id, {})[0]
    # When the invocations are delivered, the last one raising as Lambda would see it
    with pytest.raises(self_invoke.HopDeadLettered, match="the disk is on fire"):
        invokes.deliver_all()
    # Then attempts 1..3 ran, the third failed the run, the fourth only dead-letters
    invokes.stubber.assert_no_pending_responses()
    final = stack.run(run.run_id)
    assert final.status == "failed"
    assert final.error is not None and "after 3 deliveries" in final.error
    assert [(s.seq, s.status) for s in stack.steps(run.run_id)] == [(0, "failed")]


def test_a_malformed_self_invocation_raises_for_lambda_to_retry_and_dead_letter(
    stack: AwsStack,
) -> None:
    # Given a self-invocation event whose hop lacks its run id
    event = load_event("worker_self_invoke")
    del event["hop"]["run_id"]
    # When the worker gets it, Then it raises (Lambda retries, then the OnFailure DLQ)
    with pytest.raises(hops.MalformedHop, match="run_id"):
        handler(event, lambda_context(WORKER))
