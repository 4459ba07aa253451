"""What only the DynamoDB store has to get right: requests per operation, races with a
concurrent worker inside cancel and get_run, cursors, error mapping, leftovers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from contract_records import (
    T0,
    FakeClock,
    commit_steps,
    connection,
    final_step,
    graph,
    run,
    step,
    walk,
)

from engine.commands import cancel_run
from engine.errors import (
    ConflictError,
    GraphNotFound,
    InvalidInputError,
    RecordTooLargeError,
    StateTooLargeError,
    StepConflict,
    TransientStoreError,
)
from engine.memory import MemoryQueue
from engine.ports import RunEnd
from engine.service import RunService
from engine.tools import load_toolkits
from functions.aws import dynamodb_items as items
from functions.aws import dynamodb_pages
from functions.aws.dynamodb_store import DynamoRunStore
from functions.aws.errors import StoreConfigurationError, raise_store_error

# ------------------------------------------------------------------------------- cost


@contextmanager
def calls(client: Any) -> Iterator[list[str]]:
    """The DynamoDB operations made inside the block, in order."""
    made: list[str] = []

    def record(model: Any, **_: Any) -> None:
        made.append(model.name)

    client.meta.events.register("before-call.dynamodb", record)
    try:
        yield made
    finally:
        client.meta.events.unregister("before-call.dynamodb", record)


def test_a_step_commit_is_one_write_and_no_read(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    dynamo_store.create_run(run())
    with calls(dynamodb) as made:
        dynamo_store.commit_step(step(seq=0))
    assert made == ["PutItem"]
    with calls(dynamodb) as made:
        dynamo_store.commit_step(final_step(seq=1), RunEnd("completed"))
    assert made == ["TransactWriteItems"]


def test_subscribers_is_one_query(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    for conn_id in ("c1", "c2", "c3"):
        dynamo_store.save_connection(connection(conn_id))
        dynamo_store.subscribe(conn_id, "r1")
    with calls(dynamodb) as made:
        assert len(dynamo_store.subscribers("r1")) == 3
    assert made == ["Query"]


# ------------------------------------------------------------------------------- races


class Interfering:
    """A client that runs ``before`` ahead of the first call of ``operation``: what a worker
    committing at that very moment would do."""

    def __init__(self, client: Any, operation: str, before: Callable[[], None], times: int = 1):
        self._client = client
        self._operation = operation
        self._before = before
        self._left = times

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name != self._operation:
            return method

        def interfere(**kwargs: Any) -> Any:
            if self._left > 0:
                self._left -= 1
                self._before()
            return method(**kwargs)

        return interfere


def test_cancel_moves_to_the_next_slot_when_a_worker_takes_it(
    dynamodb: Any, dynamo_store: DynamoRunStore, clock: FakeClock
) -> None:
    # Given a run with two steps, and a worker that commits step 2 while cancel is writing
    dynamo_store.create_run(run())
    commit_steps(dynamo_store, "r1", 2)
    worker = step(seq=2)
    racing = Interfering(dynamodb, "transact_write_items", lambda: dynamo_store.commit_step(worker))
    store = DynamoRunStore(dynamo_store.table, racing, clock=clock)
    # When the run is cancelled
    cancelled = cancel_run(store, "r1", T0 + 9, "stop")
    # Then the worker's step stands, and the cancellation took slot 3 with its state
    assert dynamo_store.get_step("r1", 2) == worker
    taken = dynamo_store.get_step("r1", 3)
    assert taken is not None and taken.status == "cancelled" and taken.state == worker.state
    assert (cancelled.status, cancelled.steps) == ("cancelled", 4)


def test_cancel_conflicts_when_the_run_ends_meanwhile(
    dynamodb: Any, dynamo_store: DynamoRunStore, clock: FakeClock
) -> None:
    dynamo_store.create_run(run())
    ending = final_step(seq=0)
    racing = Interfering(
        dynamodb,
        "transact_write_items",
        lambda: dynamo_store.commit_step(ending, RunEnd("completed")),
    )
    store = DynamoRunStore(dynamo_store.table, racing, clock=clock)
    with pytest.raises(ConflictError, match="already completed"):
        cancel_run(store, "r1", T0 + 9, "stop")
    assert dynamo_store.get_step("r1", 0) == ending
    assert dynamo_store.get_step("r1", 1) is None


def test_cancel_gives_up_on_a_run_that_keeps_advancing(
    dynamodb: Any, dynamo_store: DynamoRunStore, clock: FakeClock
) -> None:
    dynamo_store.create_run(run())
    seq = iter(range(100))
    racing = Interfering(
        dynamodb,
        "transact_write_items",
        lambda: dynamo_store.commit_step(step(seq=next(seq))),
        times=100,
    )
    store = DynamoRunStore(dynamo_store.table, racing, clock=clock)
    with pytest.raises(TransientStoreError):
        cancel_run(store, "r1", T0 + 9, "stop", attempts=3)
    assert dynamo_store.get_run("r1").status == "running"


def test_get_run_between_a_terminal_commit_and_its_header(
    dynamodb: Any, dynamo_store: DynamoRunStore, clock: FakeClock
) -> None:
    # Given a worker that ends the run right after get_run has read the header
    dynamo_store.create_run(run())
    ending = final_step(seq=0)
    racing = Interfering(
        dynamodb, "query", lambda: dynamo_store.commit_step(ending, RunEnd("completed"))
    )
    store = DynamoRunStore(dynamo_store.table, racing, clock=clock)
    # Then the view is still consistent: the header is read again
    view = store.get_run("r1")
    assert (view.status, view.steps, view.node) == ("completed", 1, None)


# ------------------------------------------------------------------------------- cursors


def test_a_cursor_only_resumes_the_listing_it_came_from(dynamo_store: DynamoRunStore) -> None:
    for i in range(4):
        dynamo_store.create_run(run(f"r{i}", graph_id=f"g{i % 2}", created_at=T0 + i))
    by_graph = dynamo_store.list_runs(graph_id="g0", limit=1).cursor
    merged = dynamo_store.list_runs(limit=1).cursor
    assert by_graph is not None and merged is not None
    for graph_id, status, cursor in [
        ("g1", None, by_graph),
        (None, "running", by_graph),
        (None, None, by_graph),
        ("g0", None, merged),
    ]:
        with pytest.raises(InvalidInputError):
            dynamo_store.list_runs(graph_id=graph_id, status=status, cursor=cursor)
    with pytest.raises(InvalidInputError):
        dynamo_store.list_graphs(cursor=by_graph)


def test_a_selective_filter_returns_short_pages_without_losing_runs(
    dynamo_store: DynamoRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given twelve running runs of g0 newer than its only cancelled one
    monkeypatch.setattr(dynamodb_pages, "MAX_QUERIES_PER_PAGE", 2)
    dynamo_store.create_run(run("old", graph_id="g0", created_at=T0))
    cancel_run(dynamo_store, "old", T0 + 1, "stop")
    for i in range(12):
        dynamo_store.create_run(run(f"r{i}", graph_id="g0", created_at=T0 + 10 + i))
    # When cancelled runs of g0 are listed one per page
    pages, cursor = [], None
    for _ in range(20):
        page = dynamo_store.list_runs(graph_id="g0", status="cancelled", limit=1, cursor=cursor)
        pages.append([r.run_id for r in page.items])
        cursor = page.cursor
        if cursor is None:
            break
    # Then the first pages come back short (each stops after two queries), and the run
    # still comes, once
    assert pages[0] == [] and [r for p in pages for r in p] == ["old"]


class OneItemPerQuery:
    """A client whose queries of some GSI2 partitions stop after one item, as DynamoDB's
    1 MB page cap does with large items."""

    def __init__(self, client: Any, *partitions: str) -> None:
        self._client = client
        self._partitions = [{"S": p} for p in partitions]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **kwargs: Any) -> Any:
        response = self._client.query(**kwargs)
        values = kwargs.get("ExpressionAttributeValues", {})
        if values.get(":pk") in self._partitions and len(response["Items"]) > 1:
            first = response["Items"][0]
            response["Items"] = [first]
            response["LastEvaluatedKey"] = {k: first[k] for k in ("PK", "SK", "GSI2PK", "GSI2SK")}
        return response


def test_listing_all_runs_stays_ordered_when_a_partition_stops_early(
    dynamodb: Any, dynamo_store: DynamoRunStore, clock: FakeClock
) -> None:
    # Given the three newest runs running, three older ones completed
    for i in range(6):
        dynamo_store.create_run(run(f"r{i}", created_at=T0 + i))
        if i < 3:
            dynamo_store.commit_step(final_step(f"r{i}"), RunEnd("completed"))
    # And a table whose queries of every shard of both statuses return one item each
    shards = items.status_partitions("running") + items.status_partitions("completed")
    short = OneItemPerQuery(dynamodb, *shards)
    store = DynamoRunStore(dynamo_store.table, short, clock=clock)
    # When all runs, and the running ones, are listed a few per page
    for status, expected in ((None, ["r5", "r4", "r3", "r2", "r1", "r0"]),
                             ("running", ["r5", "r4", "r3"])):  # fmt: skip
        for limit in (1, 2, 3):
            pages = walk(partial(store.list_runs, status=status), limit)
            # Then no run jumps ahead of a newer one not read yet
            assert [r.run_id for p in pages for r in p] == expected, (status, limit)


@pytest.mark.slow  # hundreds of paged queries of moto's index: make test, not make check
def test_runs_by_status_are_spread_over_shards_and_paged_across_them(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    # Given forty running runs, in shuffled order, and ten completed ones interleaved in time
    order = list(range(50))
    random.Random(7).shuffle(order)
    for i in order:
        dynamo_store.create_run(run(f"run-{i:02d}", created_at=T0 + i))
        if i % 5 == 0:
            dynamo_store.commit_step(final_step(f"run-{i:02d}"), RunEnd("completed"))
    # Then the running runs sit in every shard of their status, none in the legacy partition
    partitions = {
        stored_item(dynamodb, dynamo_store.table, f"run-{i:02d}")["GSI2PK"]["S"]
        for i in range(50) if i % 5
    }  # fmt: skip
    assert partitions == set(items.status_partitions("running"))
    running = [f"run-{i:02d}" for i in reversed(range(50)) if i % 5]
    for limit in (1, 3, 7, 100):
        # When the running runs are listed page by page
        pages = walk(partial(dynamo_store.list_runs, status="running"), limit)
        # Then each comes once, newest first across the shards, in full pages but the last
        assert [r.run_id for p in pages for r in p] == running, limit
        assert [len(p) for p in pages[:-1]] == [limit] * (len(pages) - 1)
        # And all runs merge both statuses' shards the same way
        every = walk(dynamo_store.list_runs, limit)
        assert [r.run_id for p in every for r in p] == [f"run-{i:02d}" for i in reversed(range(50))]


def test_a_status_listing_refuses_another_listings_cursor(dynamo_store: DynamoRunStore) -> None:
    # Given only running runs: both listings' cursors name the same partitions
    for i in range(4):
        dynamo_store.create_run(run(f"r{i}", created_at=T0 + i))
    every = dynamo_store.list_runs(limit=1).cursor
    running = dynamo_store.list_runs(status="running", limit=1).cursor
    # Then each is refused by the other listing, and by another status's
    for status, cursor in ((None, running), ("running", every), ("failed", running)):
        with pytest.raises(InvalidInputError):
            dynamo_store.list_runs(status=status, cursor=cursor)


def test_indexes_hold_what_listings_show_and_not_the_input(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    # Given an owned graph and an owned run with a sizeable input
    dynamo_store.put_graph(graph())
    dynamo_store.create_run(run(input={"code": "x" * 5000}, owner="alice"))
    # When each index is read raw
    partitions = [
        ("GSI1", "GRAPH#g1"),
        ("GSI1", "GRAPHS"),
        ("GSI2", items.status_partition("running", "r1")),
        ("GSI3", "OWNER#alice#RUNS"),
        ("GSI3", "OWNER#alice#GRAPHS"),
    ]
    for index, partition in partitions:
        found = dynamodb.query(
            TableName=dynamo_store.table, IndexName=index,
            KeyConditionExpression=f"{index}PK = :pk",
            ExpressionAttributeValues={":pk": {"S": partition}},
        )["Items"]  # fmt: skip
        # Then it holds the keys and the listed attributes only: no input, no definition
        assert len(found) == 1, (index, partition)
        extra = set(found[0]) - set(items.LISTED_ATTRIBUTES) - {"PK", "SK"}
        assert extra <= {f"{i}{k}" for i in ("GSI1", "GSI2", "GSI3") for k in ("PK", "SK")}
        assert "input" not in found[0] and "definition" not in found[0]


def test_listed_attributes_cover_what_the_api_lists_show() -> None:
    # The API's summaries are built from listed records: every field they show is projected
    # (ids come from the keys)
    from functions.api.models import GraphSummary, RunSummary

    keys = {"run_id", "graph_id"}
    assert set(RunSummary.model_fields) - keys <= set(items.LISTED_ATTRIBUTES)
    assert set(GraphSummary.model_fields) - keys <= set(items.LISTED_ATTRIBUTES)


def stored_item(dynamodb: Any, table: str, run_id: str) -> Any:
    return dynamodb.get_item(TableName=table, Key=items.run_key(run_id))["Item"]


# ------------------------------------------------------------------------------- errors


def client_error(code: str, operation: str = "PutItem", **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **extra}, operation)


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    ],
)
def test_busy_dynamodb_is_a_transient_error(code: str) -> None:
    with pytest.raises(TransientStoreError):
        raise_store_error(client_error(code), table="t", conflict=StepConflict("r", 1))


def test_a_failed_condition_is_the_callers_conflict() -> None:
    conflict = StepConflict("r", 1)
    with pytest.raises(StepConflict) as raised:
        raise_store_error(client_error("ConditionalCheckFailedException"), table="t",
                          conflict=conflict)  # fmt: skip
    assert raised.value is conflict
    error = client_error("ConditionalCheckFailedException")
    with pytest.raises(ClientError) as unmapped:  # no conflict given: nothing to map it to
        raise_store_error(error, table="t")
    assert unmapped.value is error


def test_cancelled_transactions() -> None:
    failed = client_error(
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[{"Code": "None"}, {"Code": "ConditionalCheckFailed"}],
    )
    with pytest.raises(ConflictError):
        raise_store_error(failed, table="t", conflict=ConflictError("x"))
    busy = client_error(
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}],
    )
    with pytest.raises(TransientStoreError):
        raise_store_error(busy, table="t", conflict=ConflictError("x"))


def test_other_errors_pass_through_unchanged() -> None:
    error = client_error("AccessDeniedException")
    with pytest.raises(ClientError) as raised:
        raise_store_error(error, table="t", conflict=ConflictError("x"))
    assert raised.value is error


def test_a_missing_table_is_a_configuration_error(dynamodb: Any) -> None:
    store = DynamoRunStore("no-such-table", dynamodb)
    with pytest.raises(StoreConfigurationError, match="no-such-table"):
        store.get_run("r1")


def test_throttled_commit_is_transient(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    with Stubber(dynamodb) as stubber:
        stubber.add_client_error("put_item", service_error_code="ThrottlingException")
        with pytest.raises(TransientStoreError):
            dynamo_store.commit_step(step())


def test_a_state_too_large_even_compressed_is_refused(dynamo_store: DynamoRunStore) -> None:
    rng = random.Random(5)
    blob = "".join(rng.choice("0123456789abcdef") for _ in range(900_000))
    dynamo_store.create_run(run())
    with pytest.raises(StateTooLargeError):
        dynamo_store.commit_step(step(state={"blob": blob}))
    assert dynamo_store.get_step("r1", 0) is None


def test_a_graph_over_the_item_limit_is_refused_before_any_write(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    # Given a graph whose name alone takes more than DynamoDB's 400 KB per item
    big = replace(graph(), name="n" * 410_000)
    # When it is saved, the store refuses it with the engine's 413 error, sending nothing
    with Stubber(dynamodb) as stub:  # a stub with no responses: any call would fail
        with pytest.raises(RecordTooLargeError, match="limit of 409600 bytes"):
            dynamo_store.put_graph(big)
        stub.assert_no_pending_responses()
    with pytest.raises(GraphNotFound):
        dynamo_store.get_graph("g1")


# ------------------------------------------------------------------------------- leftovers


def test_delete_connection_leaves_no_item_behind(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    dynamo_store.save_connection(connection("c1"))
    dynamo_store.save_connection(connection("c2"))
    for i in range(30):  # more than one BatchWriteItem (25 requests) of deletes
        dynamo_store.subscribe("c1", f"r{i}")
    dynamo_store.subscribe("c2", "r0")
    dynamo_store.delete_connection("c1")
    left = dynamodb.scan(TableName=dynamo_store.table)["Items"]
    assert sorted((i["PK"]["S"], i["SK"]["S"]) for i in left) == [
        ("CONN#c2", "CONN"),
        ("CONN#c2", "SUB#r0"),
        ("RUN#r0", "SUB#c2"),
    ]


def test_headers_written_before_the_shards_are_listed_and_swept(
    dynamodb: Any, dynamo_store: DynamoRunStore, clock: FakeClock
) -> None:
    # Given a service on the store, a one-node graph, and three running runs of it, the
    # oldest and the newest written as before the status index was sharded (STATUS#running)
    queue = MemoryQueue()
    service = RunService(dynamo_store, queue, load_toolkits(["engine.toolkits.basics"]),
                         clock=clock)  # fmt: skip
    doc = {"name": "one", "entry": "inc", "edges": {"inc": "END"},
           "nodes": {"inc": {"tool": "increment", "settings": {"key": "count"}}}}  # fmt: skip
    record, _ = service.create_graph(doc)
    for i in range(3):
        dynamo_store.create_run(run(f"run-{i}", graph_id=record.graph_id, created_at=T0 + i))
    for run_id in ("run-0", "run-2"):
        dynamodb.update_item(
            TableName=dynamo_store.table, Key=items.run_key(run_id),
            UpdateExpression="SET GSI2PK = :unsharded",
            ExpressionAttributeValues={":unsharded": {"S": "STATUS#running"}},
        )  # fmt: skip
    # When the running runs are listed, one page and page by page, and all runs
    # Then the unsharded ones come with the others, newest first, each once
    expected = ["run-2", "run-1", "run-0"]
    for limit in (1, 2, 100):
        pages = walk(partial(dynamo_store.list_runs, status="running"), limit)
        assert [r.run_id for p in pages for r in p] == expected, limit
        assert [r.run_id for p in walk(dynamo_store.list_runs, limit) for r in p] == expected
    # When the sweeper runs past the lease (no run made progress)
    clock.now += service.config.protocol().lease_s + 10
    sent = service.sweep()
    # Then every run gets its hop again, the unsharded ones included
    assert sent == dict.fromkeys(expected, 1)
    # And a run that ends moves to its shard: listed once, under its final status
    queue.drain(lambda hop: service.process_hop(hop, "d-" + hop.run_id))
    assert stored_item(dynamodb, dynamo_store.table, "run-0")["GSI2PK"]["S"] == (
        items.status_partition("completed", "run-0")
    )
    assert [r.run_id for r in dynamo_store.list_runs(status="completed").items] == expected
    assert dynamo_store.list_runs(status="running").items == []
