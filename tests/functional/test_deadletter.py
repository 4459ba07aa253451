"""The step dead-letter consumer's handler over moto, with the real-shaped StepDLQ events.

Both shapes that reach StepDLQ (a hop message SQS moved there, and the OnFailure record of a
self-invocation Lambda gave up on) fail the hop's run with a reason naming the step, the node
and the cause; a run that is already final, a slot already taken, an unknown run and a
malformed letter change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.errors import TransientStoreError
from engine.ports import Hop, RunRecord
from functions.deadletter.handler import handler
from functions.deadletter.service import service
from tests.events import load_event
from tests.functional.aws_stack import AwsStack, aws_stack, lambda_context

LOOP = {
    "name": "count_to_3",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment"}},
    "branches": {"inc": {"cases": [{"when": "count >= 3", "to": "END"}], "default": "inc"}},
}
CONSUMER = "hopgraph-deadletter"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    # The letters here come once their hop's lease has passed, as AWS's do (after its
    # receives or retries ran out): a lease of 0 stands for that wait.
    with aws_stack(monkeypatch, lease_seconds="0") as s:
        yield s


@pytest.fixture
def run(stack: AwsStack) -> RunRecord:
    """A running run whose first hop is on the step queue, not yet processed."""
    graph = stack.service.create_graph(LOOP)[0]
    return stack.service.start_run(graph.graph_id, {})[0]


def hop_letter(run: RunRecord, seq: int = 0, trace: str | None = None) -> dict[str, Any]:
    """The sample StepDLQ hop message, carrying hop ``seq`` of ``run``."""
    event = load_event("sqs_step_dlq_hop")
    record = event["Records"][0]
    hop = {**json.loads(record["body"]), "run_id": run.run_id, "graph_id": run.graph_id}
    record["body"] = json.dumps({**hop, "seq": seq, "state": {"count": seq}})
    if trace is None:
        del record["attributes"]["AWSTraceHeader"]
    else:
        record["attributes"]["AWSTraceHeader"] = trace
    return event


def invocation_letter(run: RunRecord, **response: Any) -> dict[str, Any]:
    """The sample StepDLQ OnFailure record of a self-invocation of ``run``'s first hop."""
    event = load_event("sqs_step_dlq_invocation_record")
    record = json.loads(event["Records"][0]["body"])
    record["requestPayload"]["hop"].update(run_id=run.run_id, graph_id=run.graph_id, seq=0)
    record["responsePayload"].update(response)
    event["Records"][0]["body"] = json.dumps(record)
    return event


def test_a_hop_stopped_by_recursion_detection_fails_its_run(
    stack: AwsStack, run: RunRecord
) -> None:
    # Given the hop SQS dead-lettered, its trace header at the recursive loop limit
    event = hop_letter(run, trace="Root=1-6741a3c0-5e2b7d9f1c3a8e4b6d0f2a1c;Lineage=7f3e9a2c:16")
    # When the consumer gets it
    response = handler(event, lambda_context(CONSUMER))
    # Then the run failed with a reason naming the step, the node and the cause
    assert response == {"batchItemFailures": []}
    failed = stack.run(run.run_id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert "step 0 (node 'inc') was moved to the dead-letter queue" in failed.error
    assert "recursive loop detection" in failed.error
    assert "RecursiveLoop: Allow" in failed.error
    assert f"redrive the run (POST /runs/{run.run_id}/redrive)" in failed.error
    assert [(s.seq, s.status, s.error) for s in stack.steps(run.run_id)] == [
        (0, "failed", failed.error)
    ]
    # And once redriven, the step runs again and the failure stays in the log
    from engine.history import redrive_run

    assert redrive_run(stack.service, run.run_id).status == "running"
    assert [(s.seq, s.status, s.source) for s in stack.steps(run.run_id)] == [
        (0, "failed", ""), (1, "ok", "redrive")
    ]  # fmt: skip


def test_a_letter_within_the_lease_or_without_aws_s_mark_fails_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch) as stack:  # the template's lease: a minute
        graph = stack.service.create_graph(LOOP)[0]
        run = stack.service.start_run(graph.graph_id, {})[0]
        # Given letters for the run's live first hop, which AWS cannot have given up on yet
        for event in (hop_letter(run), invocation_letter(run)):
            # When the consumer gets them, Then they change nothing, and come back later
            [record] = event["Records"]
            failed = handler(event, lambda_context(CONSUMER))["batchItemFailures"]
            assert failed == [{"itemIdentifier": record["messageId"]}]
        assert stack.run(run.run_id).status == "running" and stack.steps(run.run_id) == []
    with aws_stack(monkeypatch, lease_seconds="0") as stack:
        graph = stack.service.create_graph(LOOP)[0]
        run = stack.service.start_run(graph.graph_id, {})[0]
        # Given a hop message sent to the DLQ by hand: no DeadLetterQueueSourceArn
        event = hop_letter(run)
        del event["Records"][0]["attributes"]["DeadLetterQueueSourceArn"]
        assert handler(event, lambda_context(CONSUMER)) == {"batchItemFailures": []}
        assert stack.run(run.run_id).status == "running"


def test_a_hop_the_queue_gave_up_on_says_the_worker_never_finished_it(
    stack: AwsStack, run: RunRecord
) -> None:
    # Given a dead-lettered hop whose trace header says nothing of a loop
    event = hop_letter(run, trace="Root=1-6741a3c0-5e2b7d9f1c3a8e4b6d0f2a1c;Lineage=7f3e9a2c:3")
    # When the consumer gets it
    handler(event, lambda_context(CONSUMER))
    # Then the reason names the queue the attributes give, and the likely causes
    error = stack.run(run.run_id).error
    assert error is not None
    assert "hopgraph-StepQueue-4TlAr1yYQ0Fq gave up on it after its receives ran out" in error
    assert "timed out, ran out of memory or failed to start" in error


def test_a_self_invocation_lambda_gave_up_on_fails_its_run(stack: AwsStack, run: RunRecord) -> None:
    # Given the OnFailure record of a self-invoked hop that timed out three times
    event = invocation_letter(run)
    # When the consumer gets it
    response = handler(event, lambda_context(CONSUMER))
    # Then the run failed, and the reason says what Lambda reported
    assert response == {"batchItemFailures": []}
    error = stack.run(run.run_id).error
    assert error is not None
    assert error.startswith("step 0 (node 'inc') was moved to the dead-letter queue")
    assert "(RetriesExhausted after 3 attempts)" in error
    assert "ran past its function timeout" in error
    assert "Sandbox.Timedout" in error


def test_an_init_failure_is_reported_as_such(stack: AwsStack, run: RunRecord) -> None:
    # Given the record of a worker that could not import a toolkit module
    message = "Unable to import module 'functions.worker.handler': No module named 'acme'"
    event = invocation_letter(run, errorType="Runtime.ImportModuleError", errorMessage=message)
    # When the consumer gets it, Then the reason says the worker failed to start, and why
    handler(event, lambda_context(CONSUMER))
    error = stack.run(run.run_id).error
    assert error is not None
    assert "the worker failed to start" in error
    assert "No module named 'acme'" in error


def test_the_same_letter_twice_fails_the_run_once(stack: AwsStack, run: RunRecord) -> None:
    # Given a run failed by a dead letter
    handler(invocation_letter(run), lambda_context(CONSUMER))
    first = stack.run(run.run_id)
    # When the same letter is delivered again
    response = handler(invocation_letter(run), lambda_context(CONSUMER))
    # Then nothing changed
    assert response == {"batchItemFailures": []}
    assert stack.run(run.run_id) == first
    assert len(stack.steps(run.run_id)) == 1


def test_a_run_that_is_already_final_is_left_alone(stack: AwsStack, run: RunRecord) -> None:
    # Given a cancelled run
    cancelled = stack.service.cancel_run(run.run_id)
    # When a dead letter for its first hop arrives
    response = handler(hop_letter(run), lambda_context(CONSUMER))
    # Then the run is unchanged
    assert response == {"batchItemFailures": []}
    after = stack.run(run.run_id)
    assert (after.status, after.error, after.steps) == (
        cancelled.status,
        cancelled.error,
        cancelled.steps,
    )


def test_a_slot_already_taken_is_left_alone(stack: AwsStack, run: RunRecord) -> None:
    # Given the run's first step committed (by a delivery that got through)
    hop = json.loads(hop_letter(run)["Records"][0]["body"])
    assert stack.service.process_hop(Hop.from_dict(hop), "delivery-1") == "committed"
    # When a dead letter for that same hop arrives
    handler(hop_letter(run), lambda_context(CONSUMER))
    # Then the run goes on and the step is the one that committed
    assert stack.run(run.run_id).status == "running"
    [step] = stack.steps(run.run_id)
    assert (step.status, step.committed_by) == ("ok", "delivery-1")


@pytest.mark.parametrize("unknown", ["run_id", "graph_id"])
def test_a_letter_for_an_unknown_run_is_dropped_quietly(
    stack: AwsStack, run: RunRecord, unknown: str
) -> None:
    # Given a dead letter naming a run (or graph) that does not exist
    event = hop_letter(run)
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, unknown: "r_doesnotexist0000000000"})
    # When the consumer gets it
    response = handler(event, lambda_context(CONSUMER))
    # Then it is acknowledged, and the real run is untouched
    assert response == {"batchItemFailures": []}
    assert stack.run(run.run_id).status == "running"
    assert stack.steps(run.run_id) == []


@pytest.mark.parametrize(
    "body",
    ["not json", '["a list"]', '{"hello": "world"}', '{"requestContext": {}, "requestPayload": 1}'],
)
def test_a_malformed_letter_is_logged_whole_and_acknowledged(
    stack: AwsStack, run: RunRecord, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a StepDLQ message that is neither a hop nor an invocation record
    event = hop_letter(run)
    event["Records"][0]["body"] = body
    # When the consumer gets it
    response = handler(event, lambda_context(CONSUMER))
    # Then it is acknowledged (nothing could ever act on it), its body is in the log
    assert response == {"batchItemFailures": []}
    [entry] = [r for r in caplog.records if r.getMessage() == "malformed dead letter"]
    assert entry.body == body
    assert stack.run(run.run_id).status == "running"


def test_a_letter_that_cannot_be_acted_on_yet_is_retried(
    stack: AwsStack, run: RunRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that is unavailable
    def unavailable(*_: Any, **__: Any) -> None:
        raise TransientStoreError("DynamoDB is busy")

    monkeypatch.setattr(service().store, "commit_step", unavailable)
    event = hop_letter(run)
    # When the consumer gets a letter
    response = handler(event, lambda_context(CONSUMER))
    # Then the record is reported failed, for SQS to deliver again
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert stack.run(run.run_id).status == "running"
