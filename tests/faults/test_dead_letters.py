"""Hops AWS gives up on: the run fails with the dead-letter reason, and no run hangs.

The local stack's parts, wired as infra/stack/local_stack.py wires them but on in-process moto: the
worker and the dead-letter consumer behind event sources built from a template (and, with
``Dispatch=lambda``, the worker behind the local Invoke endpoint with its OnFailure
destination), so Lambda's behaviours come from what the template declares:

- recursive loop detection: a copy of template.yaml without ``RecursiveLoop: Allow`` stops a
  40-step run's chain after 16 hops; the stopped hop reaches StepDLQ (after the step queue's
  receives, or as an OnFailure record) and the consumer fails the run. With the setting, the
  same run completes.
- timeouts: a copy whose worker times out after 1 s, and a tool that takes longer: the worker
  is killed before its own error handling runs, every time, and the consumer fails the run.

Each case checks the run protocol's invariants too: the steps before the dead-lettered hop
are committed once each, the failed step sits in its slot, and no hop is left anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.ports import RunRecord
from functions import runtime
from functions.aws import clients
from functions.deadletter.handler import handler as dead_letter_handler
from functions.worker.handler import handler as worker_handler
from infra.stack.event_source import SqsEventSource
from infra.stack.invocations import instrument
from infra.stack.lambda_endpoint import LocalLambdaEndpoint, register_from_template
from infra.template.reader import TEMPLATE_PATH, load_template
from tests.functional.aws_stack import AwsStack, aws_stack

WORKER = "hopgraph-worker"
WORKER_LINE = "      Handler: functions.worker.handler.handler\n"
WORKER_TIMEOUT_LINE = "      Timeout: !Ref WorkerTimeout\n"
COUNT_TO_40 = {
    "name": "count_to_40",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment"}},
    "branches": {"inc": {"cases": [{"when": "count >= 40", "to": "END"}], "default": "inc"}},
}
SLOW = {
    "name": "slow",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment"}, "slow": {"tool": "wait", "settings": {"ms": 1100}}},
    "edges": {"inc": "slow", "slow": "END"},
}


def template_copy(tmp_path: Path, *, allow_recursion: bool = True, timeout: int | None = None
                  ) -> dict[str, Any]:  # fmt: skip
    """template.yaml, copied, with the worker's settings changed as asked."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert text.count("RecursiveLoop: Allow") == 1 and text.count(WORKER_LINE) == 1
    if not allow_recursion:
        text = text.replace("      RecursiveLoop: Allow\n", "")
    if timeout is not None:
        assert text.count(WORKER_TIMEOUT_LINE) == 1
        text = text.replace(WORKER_TIMEOUT_LINE, f"      Timeout: {timeout}\n")
    copy = tmp_path / "template.yaml"
    copy.write_text(text, encoding="utf-8")
    return load_template(copy)


class Fleet:
    """The worker and the dead-letter consumer as the local stack runs them."""

    def __init__(self, stack: AwsStack, doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                 dispatch: str) -> None:  # fmt: skip
        self.stack = stack
        self.endpoint: LocalLambdaEndpoint | None = None
        if dispatch == "lambda":
            self.endpoint = LocalLambdaEndpoint(workers=2)
            register_from_template(
                self.endpoint, "WorkerFunction", WORKER, worker_handler,
                sqs=stack.sqs, queue_urls=stack.urls, template_doc=doc,
            )  # fmt: skip
            self.endpoint.start()
            monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", self.endpoint.url)
            clients.reset()
            runtime.install(None)
        instrument(*(clients.client(s) for s in ("dynamodb", "sqs", "lambda")))
        options: dict[str, Any] = {"template_doc": doc, "failed_visibility": 0}
        self.worker = SqsEventSource.from_template(
            stack.sqs, stack.urls, worker_handler, "WorkerFunction", function_name=WORKER,
            **options,
        )  # fmt: skip
        self.consumer = SqsEventSource.from_template(
            stack.sqs, stack.urls, dead_letter_handler, "DeadLetterFunction",
            function_name="hopgraph-deadletter", **options,
        )  # fmt: skip

    def start(self, graph: dict[str, Any]) -> str:
        record = self.stack.service.create_graph(graph)[0]
        return self.stack.service.start_run(record.graph_id, {})[0].run_id

    def drive(self, run_id: str, within_s: float = 60.0) -> RunRecord:
        """Poll both queues until the run is final (the Invoke endpoint runs on its own)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            busy = self.worker.poll_once().received + self.consumer.poll_once().received
            run = self.stack.run(run_id)
            if run.is_final:
                return run
            if not busy:
                time.sleep(0.02)
        raise AssertionError(f"run {run_id} still {self.stack.run(run_id).status}: it hangs")

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()


@pytest.fixture(params=["sqs", "lambda"])
def dispatch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, dispatch: str) -> Iterator[AwsStack]:
    # A lease of 2 s stands for the minutes AWS takes to give up on a hop: a letter that comes
    # earlier is retried until it has passed (HopProtocol.fail)
    with aws_stack(monkeypatch, dispatch=dispatch, lease_seconds="2") as s:
        yield s


def fleet(stack: AwsStack, doc: dict[str, Any], mp: pytest.MonkeyPatch, dispatch: str
          ) -> Iterator[Fleet]:  # fmt: skip
    running = Fleet(stack, doc, mp, dispatch)
    try:
        yield running
    finally:
        running.stop()


def assert_failed_at(stack: AwsStack, run: RunRecord, seq: int, node: str) -> str:
    """The run failed at ``seq``; the steps before it committed once each; no hop is left."""
    assert run.status == "failed"
    steps = stack.steps(run.run_id)
    assert [s.seq for s in steps] == list(range(seq + 1))
    assert [s.status for s in steps] == ["ok"] * seq + ["failed"]
    assert steps[-1].node == node and steps[-1].error == run.error
    assert stack.messages("StepQueue") == [] and stack.messages("StepDLQ") == []
    assert run.error is not None
    assert run.error.startswith(f"step {seq} (node {node!r}) was moved to the dead-letter queue")
    return run.error


def test_without_recursive_loop_allow_a_40_step_run_fails_at_hop_17(
    stack: AwsStack, monkeypatch: pytest.MonkeyPatch, dispatch: str, tmp_path: Path
) -> None:
    # Given a template whose worker does not declare RecursiveLoop: Allow
    doc = template_copy(tmp_path, allow_recursion=False)
    for running in fleet(stack, doc, monkeypatch, dispatch):
        # When a 40-step run starts
        run = running.drive(running.start(COUNT_TO_40))
        # Then Lambda stopped its 17th hop, and the dead-letter consumer failed the run
        error = assert_failed_at(stack, run, 16, "inc")
        assert "recursive loop detection stopped the chain" in error


def test_with_recursive_loop_allow_the_same_run_completes(
    stack: AwsStack, monkeypatch: pytest.MonkeyPatch, dispatch: str
) -> None:
    # Given the repo's template (the worker allows its recursive loop)
    for running in fleet(stack, load_template(), monkeypatch, dispatch):
        # When the 40-step run starts, Then it completes
        run = running.drive(running.start(COUNT_TO_40))
        assert (run.status, run.steps, run.state) == ("completed", 40, {"count": 40})
        assert stack.messages("StepDLQ") == []


def test_a_worker_killed_by_its_timeout_fails_the_run(
    stack: AwsStack, monkeypatch: pytest.MonkeyPatch, dispatch: str, tmp_path: Path
) -> None:
    # Given a worker that times out after 1 s, and a tool that takes 1.1 s
    doc = template_copy(tmp_path, timeout=1)
    for running in fleet(stack, doc, monkeypatch, dispatch):
        # When the run reaches the slow step (every delivery of it is killed)
        run = running.drive(running.start(SLOW))
        # Then the hop was dead-lettered without the worker's error handling, and the
        # consumer failed the run at that step
        error = assert_failed_at(stack, run, 1, "slow")
        if dispatch == "lambda":
            assert "ran past its function timeout" in error and "Sandbox.Timedout" in error
        else:
            assert "timed out, ran out of memory or failed to start" in error
