"""ApiGatewayNotifier: run events to subscribed connections through the Management API.

The Management API client is a real botocore client answered by Stubber (see
test_ws_handler.ManagementApiStub); the store is in memory and on moto DynamoDB in turn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.events import run_event, step_event
from engine.memory import MemoryQueue
from engine.ports import Connection, RunStore, StepRecord
from engine.service import RunService
from engine.tools import load_toolkits
from functions.aws.notifier import FRAME_LIMIT, ApiGatewayNotifier, encode, fit
from tests.functional.test_ws_handler import (
    COUNTER,
    ENDPOINT,
    ManagementApiStub,
    PinnedIds,
    api,  # noqa: F401  (fixture)
    moto_dynamodb,  # noqa: F401  (fixture)
    store,  # noqa: F401  (fixture: every store in turn)
    ws_env,  # noqa: F401  (fixture)
)

RUN = "r_notified"
OTHER_ENDPOINT = "https://f6g7h8i9j0.execute-api.eu-west-1.amazonaws.com/prod"


def connection(into: RunStore, connection_id: str, endpoint: str = ENDPOINT) -> Connection:
    """Save and subscribe a connection to RUN."""
    conn = Connection(connection_id, endpoint, int(time.time()) + 600)
    into.save_connection(conn)
    into.subscribe(connection_id, RUN)
    return conn


def step(seq: int, updates: dict[str, Any] | None = None) -> dict[str, Any]:
    record = StepRecord(
        run_id=RUN, seq=seq, node="inc", tool="increment", status="ok",
        updates=updates if updates is not None else {"count": seq + 1},
        state={"count": seq + 1}, next_node="inc", started_at=1.0, duration_ms=0.5,
    )  # fmt: skip
    return step_event(record, 2.0)


@pytest.fixture
def other_api(ws_env: None) -> Iterator[ManagementApiStub]:  # noqa: F811
    """The Management API of a second WebSocket API (another region)."""
    stub = ManagementApiStub(OTHER_ENDPOINT)
    yield stub
    stub.close()


def test_events_reach_every_subscriber_in_order(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given two subscribers of one run
    connection(store, "conn-a=")
    connection(store, "conn-b=")
    events = [step(0), step(1), run_event(RUN, "completed", 3.0, state={"count": 2}, steps=2)]
    api.expect_posts(6)
    # When the run's events are published
    ApiGatewayNotifier(store).publish(RUN, events)
    # Then each subscriber got all of them, in order, as compact JSON
    assert api.messages("conn-a=") == events
    assert api.messages("conn-b=") == events
    api.stubber.assert_no_pending_responses()


def test_each_connection_is_posted_at_its_own_endpoint(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
    other_api: ManagementApiStub,
) -> None:
    connection(store, "here=")
    connection(store, "there=", OTHER_ENDPOINT)
    api.expect_posts(1)
    other_api.expect_posts(1)
    ApiGatewayNotifier(store).publish(RUN, [step(0)])
    assert [cid for cid, _ in api.posts] == ["here="]
    assert [cid for cid, _ in other_api.posts] == ["there="]


def test_a_gone_connection_is_removed_and_the_others_still_served(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
    other_api: ManagementApiStub,
) -> None:
    # Given one live subscriber on one endpoint and one that has gone, on another
    connection(store, "live=")
    connection(store, "gone=", OTHER_ENDPOINT)
    api.expect_posts(2)
    other_api.expect_error("GoneException", 410)
    # When two events are published
    ApiGatewayNotifier(store).publish(RUN, [step(0), step(1)])
    # Then the gone connection was tried once and forgotten; the live one got both events
    assert [c.connection_id for c in store.subscribers(RUN)] == ["live="]
    assert len(api.messages("live=")) == 2
    assert len(other_api.posts) == 1
    other_api.stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status"),
    [("LimitExceededException", 429), ("ForbiddenException", 403), ("InternalServerError", 500)],
)
def test_a_failed_post_is_swallowed_and_the_next_event_still_goes(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
    code: str,
    status: int,
) -> None:
    connection(store, "flaky=")
    api.expect_error(code, status)
    api.expect_posts(1)
    ApiGatewayNotifier(store).publish(RUN, [step(0), step(1)])  # does not raise
    assert [m["seq"] for m in api.messages("flaky=")] == [0, 1]  # both tried, in order
    assert [c.connection_id for c in store.subscribers(RUN)] == ["flaky="]  # not removed


def test_a_failing_store_never_fails_publish(store: RunStore) -> None:  # noqa: F811
    class Broken:
        def subscribers(self, run_id: str) -> list[Connection]:
            raise RuntimeError("store down")

    notifier = ApiGatewayNotifier(Broken())  # type: ignore[arg-type]
    notifier.prefetch(RUN)
    notifier.publish(RUN, [step(0)])  # prefetched failure: looks again, fails, swallows
    notifier.publish(RUN, [step(1)])


def test_an_update_over_the_frame_limit_is_cut_down_with_where_to_fetch_it(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a step whose updates are 200 KB
    connection(store, "small=")
    big = {"report": "x" * 200_000}
    api.expect_posts(2)
    # When it is published
    ApiGatewayNotifier(store).publish(RUN, [step(4, big), step(5)])
    # Then what was posted fits in an API Gateway frame and says what was left out
    first, second = api.messages("small=")
    assert first["updates"] == {
        "truncated": True,
        "size": len(encode(big)),
        "fetch": f"/runs/{RUN}/steps?after=3&limit=1",
    }
    assert first["truncated"] == ["updates"]
    assert first["seq"] == 4 and first["node"] == "inc"
    assert "truncated" not in second  # small events go as they are
    assert all(len(encode(m)) <= FRAME_LIMIT for m in (first, second))


def test_a_final_state_over_the_frame_limit_points_at_the_run() -> None:
    event = run_event(RUN, "completed", 3.0, state={"blob": "y" * 300_000}, steps=7)
    cut = fit(event)
    assert cut["state"]["fetch"] == f"/runs/{RUN}"
    assert cut["truncated"] == ["state"] and cut["status"] == "completed"
    assert event["state"] == {"blob": "y" * 300_000}  # the original is left alone
    assert len(encode(cut)) < 128 * 1024


def test_a_huge_error_text_is_cut_too() -> None:
    event = {**step(0, {"x": "z" * 150_000}), "status": "failed", "error": "e" * 130_000}
    cut = fit(event)
    assert cut["truncated"] == ["updates", "error"]
    assert len(encode(cut)) <= FRAME_LIMIT


def test_prefetch_looks_subscribers_up_in_the_background_once(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a store that counts lookups and notes the thread they run on
    connection(store, "sub=")
    lookups: list[str] = []
    real = store.subscribers

    def counting(run_id: str) -> list[Connection]:
        lookups.append(threading.current_thread().name)
        return real(run_id)

    store.subscribers = counting  # type: ignore[method-assign]
    notifier = ApiGatewayNotifier(store)
    api.expect_posts(1)
    # When a hop prefetches and then publishes a non-final step
    notifier.prefetch(RUN)
    notifier.publish(RUN, [step(0)])
    # Then the one lookup ran off the caller's thread, and the event went out
    assert len(lookups) == 1 and lookups[0].startswith("notify")
    assert len(api.messages("sub=")) == 1


def test_a_final_event_looks_subscribers_up_afresh(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a prefetch that finished before a late subscriber arrived
    connection(store, "early=")
    looked_up = threading.Event()
    real = store.subscribers

    def signalling(run_id: str) -> list[Connection]:
        found = real(run_id)
        looked_up.set()
        return found

    store.subscribers = signalling  # type: ignore[method-assign]
    notifier = ApiGatewayNotifier(store)
    notifier.prefetch(RUN)
    assert looked_up.wait(5)
    connection(store, "late=")
    api.expect_posts(4)
    # When the last step and the final run event are published
    notifier.publish(RUN, [step(2), run_event(RUN, "completed", 3.0, state={}, steps=3)])
    # Then the late subscriber learns how the run ended too
    assert [m["type"] for m in api.messages("late=")] == ["step", "run"]
    assert [m["type"] for m in api.messages("early=")] == ["step", "run"]


def test_a_run_driven_by_the_service_reaches_its_subscriber_step_by_step(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a run service whose notifier posts through the Management API
    notifier = ApiGatewayNotifier(store, ENDPOINT)
    queue = MemoryQueue()
    service = RunService(
        store, queue, load_toolkits(["engine.toolkits.basics"]),
        notifier=notifier, ids=PinnedIds(RUN),
    )  # fmt: skip
    service.create_graph(COUNTER)
    service.start_run("g_counter", {})
    connection(store, "watcher=", endpoint="")  # saved without one: the notifier's is used
    api.expect_posts(4)
    # When its hops are processed one after another
    queue.drain(lambda hop: service.process_hop(hop, f"d-{hop.seq}"))
    # Then the subscriber saw every step in order, then the final state
    messages = api.messages("watcher=")
    assert [(m["type"], m.get("seq")) for m in messages] == [
        ("step", 0),
        ("step", 1),
        ("step", 2),
        ("run", None),
    ]
    assert messages[-1]["status"] == "completed" and messages[-1]["state"] == {"count": 3}
