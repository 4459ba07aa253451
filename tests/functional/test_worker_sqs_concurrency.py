"""The SQS worker applies a batch's hops concurrently (functions/worker/sqs.py).

Each run here is one step whose tool, registered by the test, waits; the runs' first hops are
on moto's step queue and reach the real worker handler through the emulated event source.
What each record had when records ran one after another must stay its own: its place in the
partial batch response, its last-receive handling, its log keys, the metrics it adds.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.ports import RunEnd, RunRecord
from engine.tools import ToolContext
from functions.observability import logger
from functions.worker import sqs as sqs_worker
from functions.worker.handler import handler
from tests.functional.aws_stack import AwsStack, aws_stack

MEET_S = 10.0  # the bound on a nap's wait for the others: only a broken pool waits so long
BATCH = 8
NAP_GRAPH = {
    "name": "nap",
    "entry": "nap",
    "nodes": {"nap": {"tool": "nap"}},
    "edges": {"nap": "END"},
}


class Naps:
    """The ``nap`` tool: waits until :attr:`meet` naps have been under way at once (at most
    :data:`MEET_S`), counting how many overlap. Hops applied side by side meet at once; hops
    applied one after another never meet, and each waits out the bound: a condition, not a
    duration, so that a loaded machine can neither fake an overlap nor hide one."""

    def __init__(self) -> None:
        self._met = threading.Condition()
        self._active = 0
        self.meet = 2
        self.peak = 0
        self.threads: set[threading.Thread] = set()

    def nap(self, state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        with self._met:
            self._active += 1
            self.peak = max(self.peak, self._active)
            self.threads.add(threading.current_thread())
            self._met.notify_all()
        logger.info("napping", extra={"tool_run": ctx.run_id, "tool_step": ctx.step})
        with self._met:
            self._met.wait_for(lambda: self.peak >= self.meet, timeout=MEET_S)
            self._active -= 1
        return {"napped": True}


class LogLines(logging.Handler):
    """The worker's log lines as JSON objects, formatted as Lambda would print them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(logger.registered_formatter.format(record)))

    def named(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["message"] == message]


class RecordingWorker:
    """The real worker handler; keeps each batch it got and what it answered."""

    def __init__(self) -> None:
        self.batches: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response: dict[str, Any] = handler(event, context)
        self.batches.append((event, response))
        return response


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with aws_stack(monkeypatch) as s:
        yield s


@pytest.fixture
def naps(stack: AwsStack) -> Naps:
    naps = Naps()
    stack.service.tools.tool(naps.nap)
    return naps


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    capture = LogLines()
    underlying = logging.getLogger(logger.name)  # the standard logger Powertools writes to
    underlying.addHandler(capture)
    try:
        yield capture
    finally:
        underlying.removeHandler(capture)


def start_nap_runs(stack: AwsStack, how_many: int) -> list[RunRecord]:
    graph = stack.service.create_graph(NAP_GRAPH)[0]
    return [stack.service.start_run(graph.graph_id, {})[0] for _ in range(how_many)]


def fail_commits_of(stack: AwsStack, monkeypatch: pytest.MonkeyPatch, run_id: str) -> None:
    """Every commit of ``run_id``'s steps fails, except the one that fails the run."""
    commit = stack.service.store.commit_step

    def commit_unless_doomed(step: Any, end: RunEnd | None = None) -> None:
        if step.run_id == run_id and (end is None or end.status != "failed"):
            raise RuntimeError("the disk is on fire")
        commit(step, end)

    monkeypatch.setattr(stack.service.store, "commit_step", commit_unless_doomed)


def message_id_of(event: dict[str, Any], run_id: str) -> str:
    [found] = [
        r["messageId"] for r in event["Records"] if json.loads(r["body"])["run_id"] == run_id
    ]
    return str(found)


def test_the_waiting_hops_of_a_batch_wait_side_by_side(stack: AwsStack, naps: Naps) -> None:
    # Given eight runs whose one step waits for another to be under way, their first hops on
    # the step queue
    runs = start_nap_runs(stack, BATCH)
    # When the worker receives them in one batch
    result = stack.worker_source(batch_size=10).poll_once()
    # Then every hop was applied, the waits side by side (counted, not timed: a loaded machine
    # stretches any duration), each on a thread of the batch's pool
    assert (result.received, result.succeeded) == (BATCH, BATCH)
    assert naps.peak > 1
    assert len(naps.threads) > 1
    assert [stack.run(r.run_id).status for r in runs] == ["completed"] * BATCH


def test_one_failing_record_among_concurrent_ones_is_the_only_one_reported(
    stack: AwsStack, naps: Naps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five runs, and a store whose step commits fail for the third
    runs = start_nap_runs(stack, 5)
    doomed = runs[2].run_id
    fail_commits_of(stack, monkeypatch, doomed)
    worker = RecordingWorker()
    # When the worker handles their hops in one batch
    stack.worker_source(handler=worker).poll_once()
    # Then exactly the doomed run's message is reported failed
    [(event, response)] = worker.batches
    assert len(event["Records"]) == 5
    assert response == {"batchItemFailures": [{"itemIdentifier": message_id_of(event, doomed)}]}
    # And the others completed, while the doomed run waits for its hop's next receive
    statuses = {r.run_id: stack.run(r.run_id).status for r in runs}
    assert statuses == {r.run_id: "running" if r.run_id == doomed else "completed" for r in runs}
    [back] = stack.messages("StepQueue")
    assert json.loads(back["Body"])["run_id"] == doomed


def test_a_record_failing_its_last_receive_fails_its_run_beside_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch, step_max_receives="1") as stack:
        # Given four runs, a first receive that is the last allowed, and a store whose step
        # commits fail for the second run
        stack.service.tools.tool(Naps().nap)
        runs = start_nap_runs(stack, 4)
        doomed = runs[1].run_id
        fail_commits_of(stack, monkeypatch, doomed)
        worker = RecordingWorker()
        # When the worker handles their hops in one batch
        stack.worker_source(handler=worker).poll_once()
        # Then only the doomed hop is reported failed, and its run is failed with the reason
        [(event, response)] = worker.batches
        assert response == {"batchItemFailures": [{"itemIdentifier": message_id_of(event, doomed)}]}
        failed = stack.run(doomed)
        assert failed.status == "failed"
        assert failed.error is not None and "the disk is on fire" in failed.error
        # And the other runs completed
        others = [stack.run(r.run_id).status for r in runs if r.run_id != doomed]
        assert others == ["completed"] * 3


def test_each_records_log_lines_carry_its_own_run_and_step(
    stack: AwsStack, naps: Naps, log_lines: LogLines
) -> None:
    # Given eight runs whose waits overlap
    runs = start_nap_runs(stack, BATCH)
    # When the worker handles them in one batch
    stack.worker_source(batch_size=10).poll_once()
    # Then each tool's line carries the run and step of the hop it ran in
    napping = log_lines.named("napping")
    assert naps.peak > 1 and len(napping) == BATCH
    assert all((n["run_id"], n["seq"]) == (n["tool_run"], n["tool_step"]) for n in napping)
    # And each hop's "applied" line names its own run, once
    applied = sorted(line["run_id"] for line in log_lines.named("hop applied"))
    assert applied == sorted(r.run_id for r in runs)
    # And no key is left behind on the thread that called the handler
    assert "run_id" not in logger.thread_safe_get_current_keys()


def test_the_batchs_metrics_count_every_concurrent_hop(
    stack: AwsStack, naps: Naps, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given ten runs whose waits overlap
    start_nap_runs(stack, 10)
    capsys.readouterr()
    # When the worker handles them in one batch
    stack.worker_source(batch_size=10).poll_once()
    # Then the invocation's metrics count ten committed steps and ten completed runs
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    assert naps.peak > 1
    assert (total(emitted, "StepsCompleted"), total(emitted, "RunsCompleted")) == (10, 10)


def total(emitted: list[dict[str, Any]], metric: str) -> float:
    values = [blob[metric] for blob in emitted if metric in blob]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def test_a_pollers_next_batch_reuses_its_threads(stack: AwsStack, naps: Naps) -> None:
    # Given a poller that has applied one batch
    start_nap_runs(stack, BATCH)
    stack.worker_source(batch_size=10).poll_once()
    first, naps.threads, naps.peak = naps.threads, set(), 0
    # When it applies the next batch
    start_nap_runs(stack, BATCH)
    stack.worker_source(batch_size=10).poll_once()
    # Then threads of its pool applied it, side by side again: no thread was started for it
    assert len(first) > 1 and len(naps.threads) > 1
    assert len(first | naps.threads) <= sqs_worker.MAX_CONCURRENT_HOPS


def test_batches_of_two_pollers_at_once_have_pools_of_their_own(
    stack: AwsStack, naps: Naps
) -> None:
    # Given two batches' worth of runs, and two pollers that receive at the same moment
    runs = start_nap_runs(stack, 2 * BATCH)
    naps.meet = sqs_worker.MAX_CONCURRENT_HOPS + 1  # more than one pool can hold
    together = threading.Barrier(2)

    def poll() -> None:
        together.wait()
        stack.worker_source(batch_size=BATCH).poll_once()

    # When both apply their batches at once
    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    # Then more hops ran at once than one pool has threads: neither waited for the other's
    assert naps.peak > sqs_worker.MAX_CONCURRENT_HOPS
    assert [stack.run(r.run_id).status for r in runs] == ["completed"] * len(runs)
