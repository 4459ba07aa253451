"""The local stack's console: quiet by default (banner, one line per run event, errors), and
everything with ``--verbose`` (the handlers' EMF metric lines, Powertools' info lines, the
request logs).

Each test starts its own stack as a subprocess and reads what it printed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stack import StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DEADLINE = 30.0
CHAIN = {
    "name": "two_increments",
    "entry": "a",
    "nodes": {"a": {"tool": "increment"}, "b": {"tool": "increment"}},
    "edges": {"a": "b", "b": "END"},
}
EMF = '"_aws"'
LONG_CHAIN = {
    "name": "ten_increments",
    "entry": "s0",
    "nodes": {f"s{i}": {"tool": "increment"} for i in range(10)},
    "edges": {f"s{i}": f"s{i + 1}" if i < 9 else "END" for i in range(10)},
}
METRIC_VALUES = 100
"""Powertools prints a metric's values once it holds this many, even with metrics disabled."""


def run_to_the_end(
    stack: StackProcess, graph: dict[str, object] = CHAIN, runs: int = 1, **request: object
) -> str:
    """Create ``graph``, start ``runs`` runs of it, wait until all have ended; the first's id."""
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        graph_id = client.post("/graphs", json=graph).json()["graph_id"]
        run_ids = []
        for _ in range(runs):
            started = client.post("/runs", json={"graph_id": graph_id, **request})
            assert started.status_code == 202, started.text
            run_ids.append(str(started.json()["run_id"]))
        deadline = time.monotonic() + DEADLINE
        for run_id in run_ids:
            while client.get(f"/runs/{run_id}").json()["status"] == "running":
                assert time.monotonic() < deadline, f"run {run_id} still running"
                time.sleep(0.1)
    return run_ids[0]


def console_of(options: tuple[str, ...]) -> Iterator[StackProcess]:
    stack = launch(options=options)
    try:
        yield stack
    finally:
        stack.kill()


@pytest.fixture
def quiet_stack() -> Iterator[StackProcess]:
    yield from console_of(())


@pytest.fixture
def verbose_stack() -> Iterator[StackProcess]:
    yield from console_of(("--verbose",))


def stopped_output(stack: StackProcess) -> tuple[str, str]:
    assert stack.stop() == 0
    return stack.stdout, stack.stderr


def test_quiet_console_shows_run_events_and_no_metric_lines(quiet_stack: StackProcess) -> None:
    # Given a stack started without --verbose
    # When one run completes and another fails on its step limit, and more runs than it
    # takes to fill a metric with values
    completed = run_to_the_end(quiet_stack, input={"count": 0})
    failed = run_to_the_end(quiet_stack, max_steps=1)
    run_to_the_end(quiet_stack, LONG_CHAIN, runs=METRIC_VALUES // 10 + 1)
    out, err = stopped_output(quiet_stack)

    # Then the console has one line per run event, the failure with its reason
    assert re.search(rf"^\d\d:\d\d:\d\d run {completed} started$", out, re.MULTILINE), out
    assert f"run {completed} completed in 2 steps\n" in out
    assert re.search(rf"run {failed} failed after 1 step: step limit reached", out), out
    assert out.count(f"run {completed} ") == 2
    # and no metric, info or request log lines anywhere
    assert EMF not in out + err
    assert '"level":"INFO"' not in out + err
    assert "HTTP/1.1" not in out + err


def test_verbose_console_shows_everything(verbose_stack: StackProcess) -> None:
    # Given a stack started with --verbose
    # When one run completes
    run_id = run_to_the_end(verbose_stack, input={"count": 0})
    out, err = stopped_output(verbose_stack)

    # Then the run's lines are there, and so are the EMF metric lines, the handlers' info
    # lines and the HTTP request logs (uvicorn's and moto's)
    assert f"run {run_id} completed in 2 steps\n" in out
    assert EMF in out and '"StepsCompleted"' in out
    assert '"message":"hop applied"' in out
    assert '"POST /runs HTTP/1.1" 202' in out + err
    assert re.search(r'"POST / HTTP/1.1" 200 DynamoDB_\d+\.PutItem', err), err[-2000:]
