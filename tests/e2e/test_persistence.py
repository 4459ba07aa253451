"""The local stack keeps its data across restarts: a clean stop (Ctrl-C) and ``kill -9`` of
the stack and its moto process, with graphs created and runs in flight. After the restart
the graphs and runs are there and every run completes with steps 0..n-1, each once.

Each test starts its own stack (a data folder per test); every wait has a deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

STEPS = 8
RUNS = 4
DEADLINE = 60.0
NOTES = " ".join(f"note {i}" for i in range(400))
"""A state large enough to be stored compressed (a binary attribute) in every step item."""
SLOW_CHAIN = {
    "name": "slow_chain",
    "entry": "s0",
    "nodes": {f"s{i}": {"tool": "wait", "settings": {"ms": 250}} for i in range(STEPS)},
    "edges": {f"s{i}": f"s{i + 1}" if i + 1 < STEPS else "END" for i in range(STEPS)},
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackProcess]:
    started = launch(data=tmp_path / "data")
    try:
        yield started
    finally:
        started.kill()


def start_runs(api: str) -> tuple[str, list[str]]:
    with httpx.Client(base_url=api, timeout=10.0) as client:
        created = client.post("/graphs", json=SLOW_CHAIN)
        assert created.status_code == 201, created.text
        graph_id = created.json()["graph_id"]
        start = {"graph_id": graph_id, "input": {"notes": NOTES}}
        runs = [client.post("/runs", json=start) for _ in range(RUNS)]
    assert all(r.status_code == 202 for r in runs), [r.text for r in runs]
    return graph_id, [r.json()["run_id"] for r in runs]


def runs_of(api: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    with httpx.Client(base_url=api, timeout=10.0) as client:
        return {run_id: client.get(f"/runs/{run_id}").json() for run_id in run_ids}


def wait_for(api: str, run_ids: list[str], done: Any, what: str) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        runs = runs_of(api, run_ids)
        if all(done(run) for run in runs.values()):
            return runs
        time.sleep(0.2)
    raise AssertionError(f"not every run {what} within {DEADLINE} s: {runs}")


def in_flight(api: str, run_ids: list[str]) -> None:
    """Return once every run has committed a step and none has finished."""
    runs = wait_for(api, run_ids, lambda run: run.get("steps", 0) >= 1, "started")
    assert all(run["status"] == "running" for run in runs.values()), runs


def journal_frames(data: Path) -> int:
    """How many frames the data folder's journals hold (one JSON line each)."""
    return sum(path.read_bytes().count(b"\n") for path in data.glob("changes-*.jsonl"))


def frames_written(data: Path, how_many: int) -> None:
    """Return once ``how_many`` more frames are in the journal: the last of them was taken
    after this call began, so everything committed before it is on disk."""
    wanted = journal_frames(data) + how_many
    deadline = time.monotonic() + DEADLINE
    while journal_frames(data) < wanted:
        assert time.monotonic() < deadline, f"no {how_many} frames written in {DEADLINE} s"
        time.sleep(0.1)


def assert_completed_once_each(api: str, graph_id: str, run_ids: list[str]) -> None:
    runs = wait_for(api, run_ids, lambda run: run["status"] != "running", "ended")
    assert {run["status"] for run in runs.values()} == {"completed"}, runs
    with httpx.Client(base_url=api, timeout=10.0) as client:
        assert client.get(f"/graphs/{graph_id}").status_code == 200
        for run_id in run_ids:
            steps = client.get(f"/runs/{run_id}/steps", params={"after": -1}).json()["items"]
            assert [s["seq"] for s in steps] == list(range(STEPS)), (run_id, steps)
            assert steps[-1]["run_status"] == "completed"


def test_clean_stop_keeps_graphs_and_runs_in_flight(stack: StackProcess) -> None:
    # Given a graph and runs that are half way through
    graph_id, run_ids = start_runs(stack.api)
    in_flight(stack.api, run_ids)

    # When the stack is stopped with Ctrl-C and started again on the same data folder
    assert stack.stop(timeout=20) == 0, stack.describe("did not stop cleanly")
    again = stack.restart()
    try:
        # Then the banner says where the data is and that it was kept
        assert f"data       {stack.data}" in again.stdout
        assert "kept" in again.stdout

        # And the graph is there, and every run completes with each step once
        assert_completed_once_each(again.api, graph_id, run_ids)
        # And the restart named the runs it took up (those a 2 s chain had not finished)
        resumed = re.search(r"^resumed \d+ runs?: (.+)$", again.stdout, re.MULTILINE)
        assert resumed, again.stdout
        assert set(resumed.group(1).split(", ")) <= set(run_ids), resumed.group(0)
    finally:
        again.kill()


def test_kill_9_loses_no_run_older_than_a_second(stack: StackProcess) -> None:
    # Given runs in flight, started more than a second ago
    graph_id, run_ids = start_runs(stack.api)
    in_flight(stack.api, run_ids)
    frames_written(stack.data, 2)  # the first may have been taken before in_flight returned

    # When the stack and its moto process die at once, and the stack starts again
    stack.kill_all()
    again = stack.restart()
    try:
        # Then each run goes on where it was and completes, without a gap or a repeat
        assert_completed_once_each(again.api, graph_id, run_ids)
    finally:
        again.kill()


def committed_steps(api: str, run_ids: list[str]) -> dict[str, dict[int, tuple[Any, ...]]]:
    """Each run's committed steps as a follower reads them: seq -> when it started and how
    long it took (a step that ran again would have other values)."""
    seen: dict[str, dict[int, tuple[Any, ...]]] = {}
    with httpx.Client(base_url=api, timeout=10.0) as client:
        for run_id in run_ids:
            steps = client.get(f"/runs/{run_id}/steps", params={"after": -1}).json()["items"]
            seen[run_id] = {s["seq"]: (s["started_at"], s["duration_ms"]) for s in steps}
    return seen


def test_kill_9_never_runs_again_a_step_a_follower_saw_committed(stack: StackProcess) -> None:
    # Given runs in flight, and the steps a follower has just read as committed
    graph_id, run_ids = start_runs(stack.api)
    in_flight(stack.api, run_ids)
    seen = committed_steps(stack.api, run_ids)

    # When the stack and its moto process die at once, at once (no waiting for a flush)
    stack.kill_all()
    again = stack.restart()
    try:
        # Then every run completes with each step once
        assert_completed_once_each(again.api, graph_id, run_ids)
        # And every step the follower had seen is the one it saw: none of them ran again
        after = committed_steps(again.api, run_ids)
        for run_id, steps in seen.items():
            assert steps, run_id
            assert {seq: after[run_id][seq] for seq in steps} == steps, run_id
    finally:
        again.kill()


def test_reset_starts_empty_and_a_data_folder_serves_one_stack(stack: StackProcess) -> None:
    # Given a stack that holds a graph
    graph_id, run_ids = start_runs(stack.api)
    wait_for(stack.api, run_ids, lambda run: run["status"] != "running", "ended")

    # When a second stack is started on the same data folder
    second = StackProcess.spawn("sqs", None, stack.data)
    code = second.process.wait(timeout=30)
    second.kill()

    # Then it stops at once with a one-line error naming the folder
    assert code == 1, second.describe("started on a folder in use")
    assert f"{stack.data} is in use" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr

    # When the first stack restarts with --reset
    assert stack.stop(timeout=20) == 0
    again = stack.restart("--reset")
    try:
        # Then it starts empty
        assert "(empty)" in again.stdout
        with httpx.Client(base_url=again.api, timeout=10.0) as client:
            assert client.get(f"/graphs/{graph_id}").status_code == 404
            assert client.get("/runs").json()["items"] == []
    finally:
        again.kill()
