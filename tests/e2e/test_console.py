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


def run_to_the_end(stack: StackProcess, **request: object) -> str:
    """Create the chain, start one run of it, wait until it has ended; its id."""
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        graph_id = client.post("/graphs", json=CHAIN).json()["graph_id"]
        started = client.post("/runs", json={"graph_id": graph_id, **request})
        assert started.status_code == 202, started.text
        run_id = str(started.json()["run_id"])
        deadline = time.monotonic() + DEADLINE
        while client.get(f"/runs/{run_id}").json()["status"] == "running":
            assert time.monotonic() < deadline, f"run {run_id} still running"
            time.sleep(0.1)
    return run_id


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
    # When one run completes and another fails on its step limit
    completed = run_to_the_end(quiet_stack, input={"count": 0})
    failed = run_to_the_end(quiet_stack, max_steps=1)
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
    assert '"POST / HTTP/1.1" 200' in err
