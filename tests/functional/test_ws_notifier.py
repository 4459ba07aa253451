"""ApiGatewayNotifier: run events to subscribed connections through the Management API.

The Management API client is a real botocore client answered by Stubber (see
test_ws_handler.ManagementApiStub); the store is in memory and on moto DynamoDB in turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.events import run_event, step_event
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import Connection, RunStore, StepRecord
from engine.service import EngineConfig, RunService
from engine.tools import ToolContext, Toolkit, load_toolkits
from functions.aws.notifier import MESSAGE_LIMIT, ApiGatewayNotifier, encode
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
    """Save and subscribe a connection to RUN, before RUN has steps (so, as the subscribe
    route would, with a replay that reached nothing: -1)."""
    conn = Connection(connection_id, endpoint, int(time.time()) + 600)
    into.save_connection(conn)
    into.subscribe(connection_id, RUN)
    into.record_replay(connection_id, RUN, -1)
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
    notifier.publish(RUN, [step(0)])  # the lookup fails: logged and swallowed
    notifier.publish(RUN, [step(1)])


def test_an_update_over_the_message_limit_is_cut_down_with_where_to_fetch_it(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a step whose updates hold values under 64 KB each (a larger one would travel as
    # its pointer, engine/blobs.py) but over the message limit together, and a small value
    connection(store, "small=")
    big = {"report": "x" * 63_000, "notes": "y" * 60_000, "more": "z" * 20_000, "score": 7}
    api.expect_posts(2)
    # When it is published
    ApiGatewayNotifier(store).publish(RUN, [step(4, big), step(5)])
    # Then what was posted fits API Gateway's message limit, keeps what is small, and says
    # what was left out and where to read it
    first, second = api.messages("small=")
    assert first["updates"] == {
        "report": {"truncated": True, "size": len(encode(big["report"]))},
        "notes": big["notes"],
        "more": big["more"],
        "score": 7,
    }
    assert first["truncated"] == ["updates"]
    assert first["fetch"] == f"/runs/{RUN}/steps?after=3&limit=1"
    assert first["seq"] == 4 and first["node"] == "inc"
    assert "truncated" not in second  # small events go as they are
    assert all(len(encode(m)) <= MESSAGE_LIMIT for m in (first, second))


def test_a_value_over_64_kb_travels_as_its_pointer(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a step whose updates hold a 200 KB report
    connection(store, "small=")
    api.expect_posts(1)
    # When it is published
    ApiGatewayNotifier(store).publish(RUN, [step(4, {"report": "x" * 200_000, "score": 7})])
    # Then the report travels as its pointer and the route that returns it, nothing cut
    (posted,) = api.messages("small=")
    pointer = posted["updates"]["report"]
    assert pointer["bytes"] == 200_002 and pointer["href"].endswith(pointer["$blob"])
    assert posted["updates"]["score"] == 7 and "truncated" not in posted


def _joining_run(
    into: RunStore, join_at: str, replayed_through: int, nodes: list[str]
) -> RunService:
    """A chain of ``nodes`` whose node ``join_at`` sees a client subscribe while its tool
    runs: after its hop read the run's subscribers and before its commit (the state does not
    travel inline, so the hop reads its slot, subscribers included, before the tool). The
    client's replay reached ``replayed_through``, as the subscribe route records it."""
    tools = Toolkit("interleaving")

    @tools.tool
    def subscribes_a_watcher(state: Any, ctx: ToolContext) -> dict[str, Any]:
        connection(into, "joined-mid-step=")
        into.record_replay("joined-mid-step=", RUN, replayed_through)  # what the replay reached
        return {"done": True}

    tools.include(load_toolkits(["engine.toolkits.basics"]))
    graph = {
        "name": "joining",
        "entry": nodes[0],
        "nodes": {n: {"tool": "subscribes_a_watcher" if n == join_at else "increment"}
                  for n in nodes},
        "edges": dict(zip(nodes, [*nodes[1:], "END"], strict=True)),
    }  # fmt: skip
    service = RunService(
        into, MemoryQueue(), tools, notifier=ApiGatewayNotifier(into, ENDPOINT),
        ids=PinnedIds(RUN), config=EngineConfig(),
    )  # fmt: skip
    service.create_graph(graph)
    service.start_run("g_counter", {})
    return service


def _drain(service: RunService) -> None:
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: service.process_hop(hop, f"d-{hop.seq}"))


def test_a_subscriber_that_joins_while_a_step_commits_gets_it_from_the_next_step(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a run whose first step's subscriber read misses a client that subscribes (and
    # replays nothing: the log is empty) before that step commits
    service = _joining_run(store, "work", -1, ["work", "count", "more"])
    api.expect_posts(4)
    # When the hops run, commit and publish
    _drain(service)
    # Then the second step's publisher posted the first step before its own, and the
    # subscriber got every step once, in order
    messages = api.messages("joined-mid-step=")
    assert [(m["type"], m.get("seq"), m["status"]) for m in messages] == [
        ("step", 0, "ok"),
        ("step", 1, "ok"),
        ("step", 2, "ok"),
        ("run", None, "completed"),
    ]


def test_a_subscriber_that_joins_while_a_step_commits_gets_it_from_a_cancel_after_it(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a run whose first step's subscriber read misses a client that subscribes then
    service = _joining_run(store, "work", -1, ["work", "count"])
    api.expect_posts(2)
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: service.process_hop(hop, f"d-{hop.seq}"), limit=1)
    # When the run is cancelled in the slot whose publisher would have made up for it
    service.cancel_run(RUN)
    # Then the cancel's publish did: the first step, then the run's end
    messages = api.messages("joined-mid-step=")
    assert [(m["type"], m.get("seq"), m["status"]) for m in messages] == [
        ("step", 0, "ok"),
        ("run", None, "cancelled"),
    ]


def test_a_subscriber_that_joins_during_the_last_step_gets_it(
    store: RunStore,  # noqa: F811
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a run whose last step sees a client subscribe after its subscriber read (its
    # replay got the first step)
    service = _joining_run(store, "work", 0, ["count", "work"])
    api.expect_posts(2)
    # When the hops run, commit and publish
    _drain(service)
    # Then the last step, which has no next publisher, read its subscribers after its commit
    messages = api.messages("joined-mid-step=")
    assert [(m["type"], m.get("seq"), m["status"]) for m in messages] == [
        ("step", 1, "ok"),
        ("run", None, "completed"),
    ]


def test_the_subscriber_lookup_reads_consistently(
    store: RunStore,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    # Given the DynamoDB store, watched at the requests its client sends
    if isinstance(store, MemoryRunStore):
        pytest.skip("only the DynamoDB store has a read consistency to choose")
    client = request.getfixturevalue("moto_dynamodb")
    sent: list[dict[str, Any]] = []
    keep = _keep(sent)
    client.meta.events.register("provide-client-params.dynamodb.Query", keep)
    # When the notifier looks a run's subscribers up
    ApiGatewayNotifier(store).publish(RUN, [step(0)])
    # Then the query is strongly consistent: an eventually consistent one may miss a
    # subscription written just before the step's commit
    client.meta.events.unregister("provide-client-params.dynamodb.Query", keep)
    assert [params.get("ConsistentRead") for params in sent] == [True]


def _keep(into: list[dict[str, Any]]) -> Any:
    def keep(params: dict[str, Any], **_: Any) -> None:
        into.append(dict(params))

    return keep


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
