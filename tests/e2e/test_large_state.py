"""A state of 5 MB on the local stack: its large values go to moto's S3 (ValuesBucket), the run
completes, replies show each large value as a pointer with a route that returns it, and the
values are still there after a restart (kept in the data folder like the table).

Every wait has a deadline; nothing sleeps for a fixed time to let something happen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

START = 80_000
DOUBLINGS = 6
FINAL = START * 2**DOUBLINGS  # 5,120,000 characters
GROW = {
    "name": "grow_to_5mb",
    "entry": "grow",
    "nodes": {
        "grow": {"tool": "fill", "settings": {"key": "doc", "template": "$doc$doc"}},
        "count": {"tool": "increment", "settings": {"key": "count"}},
    },
    "edges": {"grow": "count"},
    "branches": {
        "count": {"cases": [{"when": f"count >= {DOUBLINGS}", "to": "END"}], "default": "grow"}
    },
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackProcess]:
    started = launch(data=tmp_path / "data")
    try:
        yield started
    finally:
        started.kill()


def finished(client: httpx.Client, run_id: str, deadline_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}").json()
        if run["status"] != "running":
            return dict(run)
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still running after {deadline_s} s")


def test_a_run_whose_state_reaches_5_mb_completes(stack: StackProcess) -> None:
    with httpx.Client(base_url=stack.api, timeout=30.0) as client:
        # Given a graph that doubles a document six times, from 80 KB to 5 MB
        graph = client.post("/graphs", json=GROW)
        assert graph.status_code in (200, 201), graph.text
        started = client.post(
            "/runs",
            json={"graph_id": graph.json()["graph_id"], "input": {"doc": "x" * START}},
        )
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["run_id"]
        # When it runs to its end
        run = finished(client, run_id)
        # Then it completed, and its state shows the 5 MB document as a pointer
        assert run["status"] == "completed", run
        pointer = run["state"]["doc"]
        assert pointer["bytes"] == FINAL + 2 and pointer["$blob"].startswith("sha256:")
        assert run["state"]["count"] == DOUBLINGS
        # And the pointer's route returns the document whole
        value = client.get(pointer["href"])
        assert value.status_code == 200 and value.json() == "x" * FINAL
        # And the log summarizes each large update the same way
        steps = client.get(f"/runs/{run_id}/steps").json()["items"]
        grown = [s["updates"]["doc"] for s in steps if "doc" in s["updates"]]
        assert [g["bytes"] for g in grown] == [START * 2**i + 2 for i in range(1, DOUBLINGS + 1)]
    # When the stack is stopped and started again on its data folder
    assert stack.stop(timeout=20) == 0, stack.describe("did not stop cleanly")
    again = stack.restart()
    try:
        with httpx.Client(base_url=again.api, timeout=30.0) as client:
            # Then the run and its large value are still there
            assert client.get(f"/runs/{run_id}").json()["state"]["doc"] == pointer
            assert client.get(pointer["href"]).json() == "x" * FINAL
    finally:
        again.kill()
