"""Live progress on the whole local stack (``hopgraph dev`` as a subprocess), over sockets:
subscribers that join at random moments of slow runs miss nothing, and the ``/ws`` paths of
the HTTP port stream a run like the WebSocket gateway does.

Every wait has a deadline; the random subscription moments come from a seeded generator, so
a failure can be replayed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from infra.cli.client import follow_events
from tests.e2e.stack import HOST, StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
SEED = 20_261_201
TRIALS = 24
STEPS = 6
DEADLINE = 60.0  # seconds for one slow run to end and be reported, with a wide margin


def slow_chain(name: str, waits_ms: list[int]) -> dict[str, Any]:
    """A chain of ``wait`` steps (each sleeps its milliseconds), then END."""
    nodes = {f"s{i}": {"tool": "wait", "settings": {"ms": ms}} for i, ms in enumerate(waits_ms)}
    edges = {f"s{i}": f"s{i + 1}" for i in range(len(waits_ms) - 1)}
    edges[f"s{len(waits_ms) - 1}"] = "END"
    return {"name": name, "entry": "s0", "nodes": nodes, "edges": edges}


@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    started = launch("sqs")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def api(stack: StackProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        yield client


def create_graph(api: httpx.Client, definition: dict[str, Any]) -> str:
    created = api.post("/graphs", json=definition)
    assert created.status_code == 201, created.text
    return str(created.json()["graph_id"])


def start_run(api: httpx.Client, graph_id: str) -> str:
    started = api.post("/runs", json={"graph_id": graph_id, "input": {}})
    assert started.status_code in (200, 201, 202), started.text
    return str(started.json()["run_id"])


def logged_seqs(api: httpx.Client, run_id: str) -> list[int]:
    """The seqs of the run's execution log, every page."""
    seqs: list[int] = []
    after: int | None = -1
    while after is not None:
        page = api.get(f"/runs/{run_id}/steps", params={"after": after}).json()
        seqs += [step["seq"] for step in page["items"]]
        after = page.get("next_after")
    return seqs


def raw_until_complete(socket: ClientConnection, run_id: str) -> list[dict[str, Any]]:
    """Subscribe, then every message as it arrived, until the final run event has come and
    every step it counts has come too (replayed and live events may interleave)."""
    socket.send(json.dumps({"action": "subscribe", "run_id": run_id}))
    received: list[dict[str, Any]] = []
    final: dict[str, Any] | None = None
    deadline = time.monotonic() + DEADLINE
    while final is None or not {e["seq"] for e in received if e["type"] == "step"} >= set(
        range(final["steps"])
    ):
        event = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        received.append(event)
        if event["type"] == "run" and event["status"] != "running":
            final = event
    return received


def follow_at(stack: StackProcess, run_id: str, delay: float) -> dict[str, Any]:
    """After ``delay`` seconds, follow the run twice at once: with the command line's client
    (which orders and dedupes) and with a raw socket (what the wire carries)."""
    time.sleep(delay)
    with ThreadPoolExecutor(2) as pool:
        ordered = pool.submit(lambda: list(follow_events(stack.ws, run_id, DEADLINE)))
        with connect(stack.ws, open_timeout=10) as socket:
            raw = raw_until_complete(socket, run_id)
        return {"ordered": ordered.result(), "raw": raw}


def test_subscribers_joining_at_random_moments_of_slow_runs_miss_no_step(
    stack: StackProcess, api: httpx.Client
) -> None:
    # Given slow runs (steps of 20 to 120 ms), and subscription moments drawn from a seeded
    # generator across each run's span, from before its first step to after its last
    rng = random.Random(SEED)
    graph_id = create_graph(api, slow_chain("slow", [rng.randint(20, 120) for _ in range(STEPS)]))
    delays = [rng.uniform(0.0, 1.5) for _ in range(TRIALS)]
    # When each run is started and followed from its moment (six at a time)
    with ThreadPoolExecutor(6) as pool:
        runs = [start_run(api, graph_id) for _ in range(TRIALS)]
        seen = list(pool.map(lambda rd: follow_at(stack, *rd), zip(runs, delays, strict=True)))
    # Then every follower saw every committed step exactly once, in order, then the end;
    # and the raw stream carried every step (none left for a client to fetch elsewhere)
    for run_id, delay, got in zip(runs, delays, seen, strict=True):
        logged = logged_seqs(api, run_id)
        assert logged == list(range(STEPS)), (run_id, logged)
        ordered = [(e["type"], e.get("seq", e.get("status"))) for e in got["ordered"]]
        expected = [("step", seq) for seq in logged] + [("run", "completed")]
        assert [e for e in ordered if e != ("run", "running")] == expected, (delay, ordered)
        raw_seqs = {e["seq"] for e in got["raw"] if e["type"] == "step"}
        assert raw_seqs == set(logged), (delay, got["raw"])


def test_ws_run_id_on_the_http_port_streams_a_run(stack: StackProcess, api: httpx.Client) -> None:
    # Given a run whose first step takes 2 s, and a client on /ws/{run_id} of the HTTP port
    graph_id = create_graph(api, slow_chain("first-step-slow", [2000, 10, 10]))
    run_id = start_run(api, graph_id)
    with connect(f"ws://{HOST}:{stack.port}/ws/{run_id}", open_timeout=10) as socket:
        # When the run goes on (the client sends nothing: it subscribed by connecting)
        events = until_the_end(socket)
    # Then it was told where the run stood, then streamed each step, then the end
    assert events[0] == ("run", "running"), events
    assert [e for e in events if e[0] == "step"] == [("step", 0), ("step", 1), ("step", 2)]
    assert events[-1] == ("run", "completed")


def until_the_end(socket: ClientConnection) -> list[tuple[str, Any]]:
    """(type, seq or status) of each event up to the run's final one, each step once."""
    events: list[tuple[str, Any]] = []
    while not events or events[-1][0] != "run" or events[-1][1] == "running":
        event = json.loads(socket.recv(timeout=DEADLINE))
        seen = (event["type"], event.get("seq", event.get("status")))
        if seen not in events:  # replay and live may both carry a step: dedupe by seq
            events.append(seen)
    return events


@pytest.mark.parametrize("after", [None, 0])
def test_ws_run_id_of_a_finished_run_replays_it_at_once(
    stack: StackProcess, api: httpx.Client, after: int | None
) -> None:
    # Given a finished run of three steps
    graph_id = create_graph(api, slow_chain("finished", [1, 1, 1]))
    run_id = start_run(api, graph_id)
    assert list(follow_events(stack.ws, run_id, DEADLINE))[-1]["status"] == "completed"
    # When a client connects to /ws/{run_id} (from a step on, with ?after=) and sends nothing
    query = "" if after is None else f"?after={after}"
    with connect(f"ws://{HOST}:{stack.port}/ws/{run_id}{query}", open_timeout=10) as socket:
        events = until_the_end(socket)
    # Then it gets the committed steps from the log, then the final event, without waiting
    first = 0 if after is None else after + 1
    assert events == [("step", seq) for seq in range(first, 3)] + [("run", "completed")]


def test_ws_on_the_http_port_takes_the_same_actions(stack: StackProcess, api: httpx.Client) -> None:
    # Given a finished run
    graph_id = create_graph(api, slow_chain("quick", [1, 1]))
    run_id = start_run(api, graph_id)
    assert list(follow_events(stack.ws, run_id, DEADLINE))[-1]["status"] == "completed"
    # When a client of /ws subscribes to it, and sends something the API does not know
    with connect(f"ws://{HOST}:{stack.port}/ws", open_timeout=10) as socket:
        replay = raw_until_complete(socket, run_id)
        socket.send(json.dumps({"action": "dance"}))
        error = json.loads(socket.recv(timeout=DEADLINE))
    # Then it got the replay and the final event, as on the gateway, and the same error
    assert [(e["type"], e.get("seq", e.get("status"))) for e in replay] == [
        ("step", 0),
        ("step", 1),
        ("run", "completed"),
    ]
    assert error["type"] == "error" and error["message"].startswith("unknown action 'dance'")


def test_ws_on_the_http_port_refuses_an_unknown_run_as_the_gateway_does(
    stack: StackProcess,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{HOST}:{stack.port}/ws/r_nope", open_timeout=10)
    assert refused.value.response.status_code == 404
    refusal = json.loads(refused.value.response.body)
    assert (refusal["type"], refusal["message"]) == ("error", "run 'r_nope' not found")


@pytest.mark.parametrize("after", [None, 1])
def test_run_id_on_the_gateway_replays_once_the_connection_is_up(
    stack: StackProcess, api: httpx.Client, after: int | None
) -> None:
    # Given a finished run of three steps
    graph_id = create_graph(api, slow_chain("finished-gateway", [1, 1, 1]))
    run_id = start_run(api, graph_id)
    assert list(follow_events(stack.ws, run_id, DEADLINE))[-1]["status"] == "completed"
    # When a client connects to the WebSocket API with ?run_id= (and ?after=) and sends nothing
    query = f"?run_id={run_id}" + ("" if after is None else f"&after={after}")
    with connect(stack.ws + query, open_timeout=10) as socket:
        events = until_the_end(socket)
    # Then $connect's replay, run once the connection opened, sends the logged steps and the end
    first = 0 if after is None else after + 1
    assert events == [("step", seq) for seq in range(first, 3)] + [("run", "completed")]
