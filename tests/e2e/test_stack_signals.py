"""The local stack as a good neighbour: SIGTERM to its process group (what systemd's default
kill mode, ``timeout`` and CI runners send) stops it as Ctrl-C does, and an open stack is not
served on a network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from tests.e2e.stack import REPO, launch, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
STEPS = 20
SLOW_CHAIN = {
    "name": "slow_chain",
    "entry": "s0",
    "nodes": {f"s{i}": {"tool": "wait", "settings": {"ms": 250}} for i in range(STEPS)},
    "edges": {f"s{i}": f"s{i + 1}" if i + 1 < STEPS else "END" for i in range(STEPS)},
}


def test_sigterm_to_the_process_group_stops_the_stack_as_ctrl_c_does() -> None:
    # Given a stack with a run in flight
    stack = launch("sqs")
    try:
        graph = httpx.post(f"{stack.api}/graphs", json=SLOW_CHAIN).json()
        started = httpx.post(f"{stack.api}/runs", json={"graph_id": graph["graph_id"]})
        assert started.status_code == 202, started.text
        # When its whole process group gets SIGTERM, the stack and moto's process alike
        os.killpg(stack.process.pid, signal.SIGTERM)
        code = stack.process.wait(timeout=30)
    finally:
        stack.kill()
    stack._join_readers()
    # Then it stopped in order, said so, and printed no traceback
    assert code == 0, stack.describe(f"exited with {code}")
    assert "hopgraph local stack stopped" in stack.stdout, stack.describe("no stopped line")
    assert "Traceback" not in stack.stderr, stack.describe("logged a traceback")


def test_an_open_stack_is_not_served_on_a_network() -> None:
    # When the stack is asked to listen beyond this machine with the dev mode's open door
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "dev", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO, env=stack_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Then it refuses, in one line that says what to add
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--auth strict" in done.stderr and "0.0.0.0" in done.stderr
    assert "is up" not in done.stdout
