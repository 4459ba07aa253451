"""The whole local stack, end to end, over sockets only: ``hopgraph dev`` runs as a subprocess
(once per dispatch mode, both started at once), and the tests talk to it as a user would:
HTTP, a WebSocket, the run-requests queue on its moto endpoint, and the ``hopgraph`` CLI.

Every wait has a deadline; nothing sleeps for a fixed time to let something happen.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from websockets.sync.client import connect

from infra.stack.token_issuer import DEFAULT_USER
from tests.e2e.stack import REPO, StackProcess, free_ports, launch, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MODES = ("sqs", "lambda")
DEADLINE = 30.0  # seconds for one run of the code review to end, with a wide margin
SAMPLE = REPO / "examples" / "sample_code.py"
DIALECT1 = json.loads((REPO / "examples" / "code_review_compat.json").read_text())
HOPGRAPH = Path(sys.executable).parent / "hopgraph"


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stacks() -> Iterator[dict[str, StackProcess]]:
    """A stack per dispatch mode, started in parallel (each takes seconds to come up)."""
    with ThreadPoolExecutor(len(MODES)) as pool:
        futures = {mode: pool.submit(launch, mode) for mode in MODES}
    started = {m: f.result() for m, f in futures.items() if f.exception() is None}
    try:
        for future in futures.values():
            future.result()  # re-raises the first StackFailed, with the stack's output
        yield started
    finally:
        for stack in started.values():
            stack.kill()  # already stopped by test_ctrl_c_stops_each_stack, unless it failed


@pytest.fixture(params=MODES)
def stack(request: pytest.FixtureRequest, stacks: dict[str, StackProcess]) -> StackProcess:
    return stacks[request.param]


@pytest.fixture(scope="module")
def sqs_stack(stacks: dict[str, StackProcess]) -> StackProcess:
    return stacks["sqs"]


def http(stack: StackProcess) -> httpx.Client:
    return httpx.Client(base_url=stack.api, timeout=10.0)


def create_code_review(client: httpx.Client) -> str:
    """The code-review graph, created in dialect 1 through the compatibility route."""
    created = client.post("/graph/create", json=DIALECT1)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["name"] == "code_review"
    assert body["graph"]["entry"] == "extract"  # stored in canonical form
    return str(body["graph_id"])


# -- following a run over the WebSocket -----------------------------------------------------
@dataclass
class Followed:
    run_id: str
    events: list[dict[str, Any]]

    @property
    def final(self) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e.get("type") == "run")

    @property
    def live_steps(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "step"]


def follow(stack: StackProcess, start: Callable[[], str]) -> Followed:
    """Connect, start the run, subscribe, and collect events until the final run event and
    every step it counts have arrived.

    The subscription replays the steps committed before it, then the run's status, while the
    worker posts new steps live: the two interleave on the wire, so a client orders them by
    ``seq`` (and drops repeats), as ``hopgraph run --follow`` does."""
    events: list[dict[str, Any]] = []
    with connect(stack.ws, open_timeout=10) as socket:
        run_id = start()
        socket.send(json.dumps({"action": "subscribe", "run_id": run_id}))
        deadline = time.monotonic() + DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no final run event within {DEADLINE} s: {events}"
            event = json.loads(socket.recv(timeout=remaining))
            assert event.get("type") in ("step", "run"), event
            events.append(event)
            followed = Followed(run_id, events)
            if _complete(followed):
                return followed


def _complete(followed: Followed) -> bool:
    runs = [e for e in followed.events if e.get("type") == "run" and e["status"] != "running"]
    if not runs:
        return False
    seen = {e["seq"] for e in followed.live_steps}
    return seen >= set(range(runs[-1]["steps"]))


def first_seen_order(steps: list[dict[str, Any]]) -> list[int]:
    """The seqs in arrival order, each once (events are at least once)."""
    seen: list[int] = []
    for step in steps:
        if step["seq"] not in seen:
            seen.append(step["seq"])
    return seen


# -- 1-3, 7: a run over HTTP, followed live ---------------------------------------------------
def test_code_review_run_followed_over_websocket(stack: StackProcess) -> None:
    with http(stack) as client:
        # Given the code-review graph, created in dialect 1
        graph_id = create_code_review(client)

        # When a run starts through the compatibility route and is followed live
        def start() -> str:
            started = client.post(
                "/graph/run",
                json={"graph_id": graph_id, "initial_state": {"code": SAMPLE.read_text()}},
            )
            assert started.status_code == 200, started.text
            assert started.json()["status"] == "running"
            return str(started.json()["run_id"])

        followed = follow(stack, start)
        run_id = followed.run_id

        # Then every step arrives, replayed or live, none missing: ordered by seq, each once
        n = followed.final["steps"]
        arrived = first_seen_order(followed.live_steps)
        assert sorted(arrived) == list(range(n)), f"steps missing or foreign: {arrived}"
        logged = client.get(f"/runs/{run_id}/steps", params={"after": -1}).json()["items"]
        by_seq = {e["seq"]: e for e in followed.live_steps}
        assert [by_seq[s["seq"]]["node"] for s in logged] == [s["node"] for s in logged]

        # And the final event is `completed`, with the final state
        assert followed.final["status"] == "completed", followed.final
        final_state = followed.final["state"]
        assert final_state["quality_score"] >= 7

        # And the compatibility state route agrees, with the whole log, every step once
        state = client.get(f"/graph/state/{run_id}").json()
        assert state["status"] == "completed"
        assert state["current_state"] == final_state
        assert state["current_node"] is None
        log = state["execution_log"]
        assert [e["seq"] for e in log] == list(range(n))
        assert all(e["status"] == "ok" for e in log), log
        assert log[-1]["run_status"] == "completed"
        assert log[0]["node"] == "extract" and log[-1]["node"] == "evaluate"
        by_seq = {e["seq"]: e for e in log}
        for step in followed.live_steps:  # what the socket said is what the log says
            assert (step["node"], step["tool"]) == (by_seq[step["seq"]]["node"],
                                                    by_seq[step["seq"]]["tool"])  # fmt: skip


# -- 4: a run requested through the run-requests queue --------------------------------------
def test_run_requested_through_the_queue(stack: StackProcess) -> None:
    with http(stack) as client:
        graph_id = create_code_review(client)  # its own graph: its runs are this test's
        sqs = boto3.client(
            "sqs",
            endpoint_url=stack.moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        key = f"e2e-{uuid.uuid4().hex}"
        request = {"graph_id": graph_id, "input": {"code": SAMPLE.read_text()}}
        # for the user the graph's creator is: the dev user, who sent no token
        body = json.dumps({**request, "idempotency_key": key, "owner": DEFAULT_USER})

        # When the same request is sent twice (a producer retrying)
        for _ in range(2):
            sqs.send_message(QueueUrl=stack.run_requests_queue_url, MessageBody=body)

        # Then one run of that graph starts and completes
        run = poll_for_completed_run(client, graph_id)
        assert run["idempotency_key"] == key
        assert run["input"] == request["input"]
        assert run["state"]["quality_score"] >= 7

        # And once both messages are consumed, it is still the only run
        wait_until_drained(sqs, stack.run_requests_queue_url)
        runs = client.get("/runs", params={"graph_id": graph_id}).json()["items"]
        assert [r["run_id"] for r in runs] == [run["run_id"]]


def poll_for_completed_run(client: httpx.Client, graph_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        runs = client.get("/runs", params={"graph_id": graph_id}).json()["items"]
        for summary in runs:
            assert summary["status"] in ("running", "completed"), summary
            run: dict[str, Any] = client.get(f"/runs/{summary['run_id']}").json()
            if run["status"] == "completed":
                return run
        time.sleep(0.2)
    raise AssertionError(f"no completed run of {graph_id} within {DEADLINE} s")


def wait_until_drained(sqs: Any, queue_url: str) -> None:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        if all(attributes["Attributes"][name] == "0" for name in names):
            return
        time.sleep(0.2)
    raise AssertionError(f"{queue_url} still has messages after {DEADLINE} s")


# -- 5: the CLI against the stack -------------------------------------------------------------
def hopgraph(stack: StackProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``hopgraph --api ... --ws ... ARGS``; never a traceback, whatever the exit code."""
    command = [str(HOPGRAPH)] if HOPGRAPH.exists() else [sys.executable, "-m", "infra.cli.main"]
    env = {**stack_env(), "COLUMNS": "200"}  # wide enough that tables never cut an id
    done = subprocess.run(
        [*command, "--api", stack.api, "--ws", stack.ws, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@dataclass(frozen=True)
class CliRun:
    graph_id: str
    run_id: str
    steps: int
    output: str


@pytest.fixture(scope="module")
def cli_run(sqs_stack: StackProcess) -> CliRun:
    """A graph created and a run followed to its end, both by the CLI."""
    graph = REPO / "examples" / "code_review.json"
    created = ok_json(hopgraph(sqs_stack, "graphs", "create", str(graph), "--json"))
    done = hopgraph(
        sqs_stack, "run", created["graph_id"], "--set", f"code=@{SAMPLE}", "--follow",
        "--timeout", str(DEADLINE),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = re.search(r"following run (r_\w+)", done.stdout)
    steps = re.search(r"run completed after (\d+) steps", done.stdout)
    assert run_id and steps, done.stdout
    return CliRun(created["graph_id"], run_id.group(1), int(steps.group(1)), done.stdout)


def test_cli_run_follow_prints_every_step(cli_run: CliRun, sqs_stack: StackProcess) -> None:
    printed = [int(s) for s in re.findall(r"^step\s+(\d+)\s", cli_run.output, re.MULTILINE)]
    assert printed == list(range(cli_run.steps))
    assert "quality_score" in cli_run.output  # the final state is shown
    run = ok_json(hopgraph(sqs_stack, "runs", "show", cli_run.run_id, "--json"))
    assert (run["status"], run["steps"]) == ("completed", cli_run.steps)


def test_cli_run_follow_json_is_one_event_per_line(
    cli_run: CliRun, sqs_stack: StackProcess
) -> None:
    done = hopgraph(
        sqs_stack, "--json", "run", cli_run.graph_id, "--set", f"code=@{SAMPLE}", "--follow",
        "--timeout", str(DEADLINE),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    steps = sorted({e["seq"] for e in events if e["type"] == "step"})
    assert events[-1]["type"] == "run" and events[-1]["status"] == "completed"
    assert steps == list(range(events[-1]["steps"]))


def test_cli_runs_graphs_and_tools(cli_run: CliRun, sqs_stack: StackProcess) -> None:
    commands = {
        "runs": ("runs", "list"),
        "runs_json": ("runs", "list", "--graph-id", cli_run.graph_id, "--json"),
        "logs": ("runs", "logs", cli_run.run_id),
        "logs_json": ("runs", "logs", cli_run.run_id, "--json"),
        "mermaid": ("graphs", "show", cli_run.graph_id, "--mermaid"),
        "graph_json": ("graphs", "show", cli_run.graph_id, "--json"),
        "tools": ("tools",),
        "tools_json": ("tools", "--json"),
    }
    # Independent reads: run side by side, as each is mostly a process starting.
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(hopgraph, sqs_stack, *args) for name, args in commands.items()}
    out = {name: future.result() for name, future in futures.items()}
    for name, done in out.items():
        assert done.returncode == 0, (name, done.stderr)

    assert cli_run.run_id in out["runs"].stdout and "completed" in out["runs"].stdout
    runs = json.loads(out["runs_json"].stdout)
    assert {(r["run_id"], r["status"]) for r in runs} >= {(cli_run.run_id, "completed")}

    for node in ("extract", "complexity", "issues", "suggest", "evaluate"):
        assert node in out["logs"].stdout
    entries = json.loads(out["logs_json"].stdout)
    assert [e["seq"] for e in entries] == list(range(cli_run.steps))

    mermaid = out["mermaid"].stdout
    assert mermaid.startswith("flowchart") and "improve" in mermaid, mermaid
    graph = json.loads(out["graph_json"].stdout)
    assert graph["graph_id"] == cli_run.graph_id and graph["graph"]["entry"] == "extract"

    assert "extract_functions" in out["tools"].stdout
    names = {t["name"] for t in json.loads(out["tools_json"].stdout)}
    assert {"extract_functions", "improve_code", "increment"} <= names


BAD_GRAPH = {
    "name": "bad",
    "entry": "nowhere",
    "nodes": {"a": {"tool": "no_such_tool"}},
    "edges": {"a": "b"},
}


@pytest.mark.parametrize("command", [("graphs", "create"), ("run",)])
def test_cli_bad_graph_file_lists_its_problems(
    command: tuple[str, ...], sqs_stack: StackProcess, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BAD_GRAPH))
    done = hopgraph(sqs_stack, *command, str(bad))
    assert done.returncode == 2, done.stdout + done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) >= 3, done.stderr  # the entry, the tool and the edge target
    assert "no_such_tool" in done.stderr and "nowhere" in done.stderr


def test_cli_usage_errors_exit_2(sqs_stack: StackProcess, tmp_path: Path) -> None:
    not_json = tmp_path / "graph.json"
    not_json.write_text("{nodes: ")
    cases = {
        ("graphs", "create", str(not_json)): "not valid JSON",
        ("graphs", "create", str(tmp_path / "missing.json")): "does not exist",
        ("runs", "show", "r_no_such_run"): "404",
        ("run", "g_no_such_graph"): "404",
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        results = pool.map(lambda args: hopgraph(sqs_stack, *args), cases)
    for (args, says), done in zip(cases.items(), results, strict=True):
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)


# -- 6: a second stack on a port in use --------------------------------------------------------
@pytest.mark.parametrize("taken", ["port", "ws_port"])
def test_second_dev_on_a_taken_port_fails_fast(taken: str, sqs_stack: StackProcess) -> None:
    port, ws_port = free_ports(2)
    ports = {"port": port, "ws_port": ws_port, taken: getattr(sqs_stack, taken)}
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "dev", "--port", str(ports["port"]),
         "--ws-port", str(ports["ws_port"])],
        cwd=REPO, env=stack_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # Then it stops before moto, the gateway or uvicorn start: one line, and no banner
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is up" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: port") and str(ports[taken]) in lines[0]
    assert "already in use" in lines[0]


# -- Ctrl-C; runs last in this module, the fixture kills whatever is left -----------------------
def test_ctrl_c_stops_each_stack_cleanly(stacks: dict[str, StackProcess]) -> None:
    with ThreadPoolExecutor(len(stacks)) as pool:  # each stop is bounded by its timeout
        stopped = pool.map(lambda stack: stack.stop(timeout=10), stacks.values())
        codes = dict(zip(stacks, stopped, strict=True))
    for mode, stack in stacks.items():
        assert codes[mode] == 0, stack.describe(f"exited with {codes[mode]}")
        assert "hopgraph local stack stopped" in stack.stdout, mode
        assert "Traceback" not in stack.stderr, stack.describe("logged a traceback")
