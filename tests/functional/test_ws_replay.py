"""Subscribing replays a run's committed steps, then says where the run stands.

The WebSocket handler runs route by route on real-shaped events (events/ws_*.json), on each
store in turn; what it posts is caught by a real Management API client answered by
botocore's Stubber (test_ws_handler.ManagementApiStub).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.events import MESSAGE_LIMIT, encode
from engine.memory import MemoryQueue
from engine.ports import Page, RunRecord, StepRecord
from engine.service import RunService
from functions.aws.notifier import ApiGatewayNotifier
from functions.websocket import routes
from tests.events import load_event
from tests.functional.test_ws_handler import (
    CONNECTION_ID,
    ENDPOINT,
    RUN_ID,
    ManagementApiStub,
    OwnedRuns,
    api,  # noqa: F401  (fixture)
    connect,
    finish,
    invoke,
    message,
    moto_dynamodb,  # noqa: F401  (fixture)
    service,  # noqa: F401  (fixture: a run service on every store in turn)
    store,  # noqa: F401  (fixture)
    ws_env,  # noqa: F401  (fixture)
)

BIG_REPORT = "r" * 200_000
BIG = {
    "name": "big",
    "entry": "report",
    "nodes": {"report": {"tool": "set_values", "settings": {"values": {"report": BIG_REPORT}}}},
    "edges": {"report": "END"},
}


class BigIds:
    """The ids of the big graph and its run (the service fixture pins the counter's)."""

    def graph_id(self) -> str:
        return "g_big"

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str:
        return "r_big"


def subscribe(**fields: Any) -> dict[str, Any]:
    """Invoke the subscribe route with events/ws_subscribe.json carrying ``fields``."""
    body = {"action": "subscribe", "run_id": RUN_ID, **fields}
    return invoke(message("ws_subscribe", json.dumps(body)))


def kinds(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["type"], m["seq"] if m["type"] == "step" else m.get("status")) for m in messages]


def step_once(runs: RunService) -> None:
    queue = runs.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: runs.process_hop(hop, f"d-{hop.seq}"), limit=1)


def test_after_replays_only_the_later_steps(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a finished three-step run
    service.start_run("g_counter", {})
    finish(service)
    connect()
    api.expect_posts(3)
    # When a client subscribes after step 0
    result = subscribe(after=0)
    # Then it gets steps 1 and 2, then the final event
    assert result["statusCode"] == 200
    assert kinds(api.messages()) == [("step", 1), ("step", 2), ("run", "completed")]


def test_after_the_last_step_replays_nothing_but_the_status(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    service.start_run("g_counter", {})
    finish(service)
    connect()
    api.expect_posts(1)
    subscribe(after=2)
    assert kinds(api.messages()) == [("run", "completed")]


def test_a_replayed_step_is_the_step_event_the_worker_published(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a run that took one step
    service.start_run("g_counter", {})
    step_once(service)
    connect()
    api.expect_posts(2)
    # When a client subscribes
    subscribe()
    # Then the replayed step carries what a live step event carries
    replayed = api.messages()[0]
    assert replayed == {
        "type": "step",
        "run_id": RUN_ID,
        "ts": replayed["ts"],
        "seq": 0,
        "node": "inc",
        "tool": "increment",
        "status": "ok",
        "updates": {"count": 1},
        "duration_ms": replayed["duration_ms"],
        "next": "inc",
    }


@pytest.mark.parametrize("after", ["1", -2, 1.5, True, None, [0]])
def test_a_bad_after_is_a_clear_error_and_subscribes_nothing(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
    after: Any,
) -> None:
    service.start_run("g_counter", {})
    connect()
    api.expect_posts(1)
    result = subscribe(after=after)
    assert 400 <= result["statusCode"] < 500  # the client's mistake (the error table's status)
    [error] = api.messages()
    assert (error["type"], error["action"], error["run_id"]) == ("error", "subscribe", RUN_ID)
    assert error["message"] == '"after" must be an integer of -1 or more (a step\'s "seq")'
    assert service.store.subscribers(RUN_ID) == []


def test_the_replay_reads_every_page_of_the_log(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a finished three-step run, and replay pages of two steps
    service.start_run("g_counter", {})
    finish(service)
    connect()
    monkeypatch.setattr(routes, "REPLAY_PAGE_SIZE", 2)
    asked: list[tuple[int, int]] = []
    list_steps = service.store.list_steps

    def recording(run_id: str, after: int = -1, limit: int = 100) -> Page[StepRecord]:
        asked.append((after, limit))
        return list_steps(run_id, after, limit)

    monkeypatch.setattr(service.store, "list_steps", recording)
    api.expect_posts(4)
    # When a client subscribes
    subscribe()
    # Then the log was read page by page, and every step was replayed once, in order
    assert asked[:2] == [(-1, 2), (1, 2)]
    assert kinds(api.messages()) == [("step", 0), ("step", 1), ("step", 2), ("run", "completed")]


def test_a_step_committed_during_the_subscription_arrives_and_the_status_follows_it(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run one step in, whose next step commits (and is published live) just after
    # the subscription's replay has read the log and before the run is read
    service.notifier = ApiGatewayNotifier(service.store, ENDPOINT)
    service.start_run("g_counter", {})
    step_once(service)
    connect()
    get_run, get_subscribers = service.store.get_run, service.store.subscribers
    stepped: list[bool] = []

    def step_then_read(run_id: str) -> RunRecord:
        # Only once subscribed: the read before that is the check of who owns the run.
        if not stepped and get_subscribers(run_id):
            stepped.append(True)
            step_once(service)
        return get_run(run_id)

    monkeypatch.setattr(service.store, "get_run", step_then_read)
    api.expect_posts(5)
    # When the client subscribes
    subscribe()
    # Then step 1 came live (after step 0 again: its publisher cannot know yet how far the
    # replay got) and again in the replay's catch-up, before the status, which counts it
    assert kinds(api.messages()) == [
        ("step", 0), ("step", 0), ("step", 1), ("step", 1), ("run", "running"),
    ]  # fmt: skip
    assert api.messages()[-1]["steps"] == 2


def test_a_failed_post_stops_the_replay_and_the_status_still_goes(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a finished three-step run, and a Management API that throttles the second post
    service.start_run("g_counter", {})
    finish(service)
    connect()
    api.expect_posts(1)
    api.expect_error("LimitExceededException", 429)
    api.expect_posts(1)
    # When a client subscribes
    result = subscribe()
    # Then the replay stopped at the failure, and the final event says how many steps there
    # are, so the client can see the gap and subscribe again from where it is
    assert result["statusCode"] == 200
    assert kinds(api.messages()) == [("step", 0), ("step", 1), ("run", "completed")]
    assert api.messages()[-1]["steps"] == 3
    api.stubber.assert_no_pending_responses()


def test_a_late_subscriber_of_a_run_with_a_200_kb_state_gets_fitted_events(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a finished run whose one step wrote a 200 KB report
    runs = OwnedRuns(service.store, MemoryQueue(), service.tools, ids=BigIds())
    runs.create_graph(BIG)
    run, _ = runs.start_run("g_big", {})
    finish(runs)
    connect()
    api.expect_posts(2)
    # When a client subscribes after it finished
    invoke(message("ws_subscribe", json.dumps({"action": "subscribe", "run_id": run.run_id})))
    # Then it is told the step and that the run completed, each within API Gateway's limit,
    # with the report as its pointer and the route that returns it (engine/blobs.py)
    step, final = api.messages()
    assert all(len(encode(m)) <= MESSAGE_LIMIT for m in (step, final))
    pointer = step["updates"]["report"]
    assert pointer["bytes"] == len(encode(BIG_REPORT))
    assert pointer["href"] == f"/runs/{run.run_id}/values/{pointer['$blob']}"
    assert (final["type"], final["status"], final["steps"]) == ("run", "completed", 1)
    assert final["state"]["report"] == pointer


def test_an_error_reply_echoing_a_huge_message_fits_too(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a client that sends an unknown action of 100 KB
    connect()
    api.expect_posts(1)
    invoke(message("ws_default", json.dumps({"action": "x" * 100_000})))
    # Then its error reply still fits API Gateway's message limit, and says it is an error
    [error] = api.messages(CONNECTION_ID)
    assert len(encode(error)) <= MESSAGE_LIMIT
    assert error["type"] == "error" and error["message"].startswith("unknown action 'xxx")


def test_subscribe_with_the_event_file_replays_from_the_start(
    service: RunService,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # events/ws_subscribe.json names no "after": the whole log is replayed
    service.start_run("g_counter", {})
    finish(service)
    connect()
    api.expect_posts(4)
    invoke(load_event("ws_subscribe"))
    assert kinds(api.messages()) == [("step", 0), ("step", 1), ("step", 2), ("run", "completed")]
