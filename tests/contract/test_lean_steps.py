"""Lean steps (engine/deltas.py), on every store: a step keeps what changed, the full state is
kept at every K-th superstep or once the deltas since pass a size, and any superstep's state
reads back whole, from a warm store (which knows the last state) and a cold one alike."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from contract_records import T0, run, step

from engine import deltas
from engine.errors import NotFoundError
from engine.memory import MemoryRunStore
from engine.ports import AttemptRecord, RunStore, StepRecord, TaskRecord
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_store import DynamoRunStore

K = deltas.SNAPSHOT_EVERY
INPUT = {"code": "def f(): pass"}


def _text(size: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters) for _ in range(size))


def _cold(store: RunStore) -> RunStore:
    """The same records, read by a store that knows no state yet (a cold worker)."""
    if isinstance(store, DynamoRunStore):
        return DynamoRunStore(store.table, store._client, clock=store._clock)
    assert isinstance(store, MemoryRunStore)
    store._states = deltas.StateCache(frozen=False)
    for log in store._logs.values():  # nor the last step of each run whole
        log.tip = None
    return store


def _kept_whole(store: RunStore, run_id: str, seq: int) -> bool:
    """Whether step ``seq`` is stored with its full state."""
    if isinstance(store, DynamoRunStore):
        return "state" in _item(store, run_id, seq)
    assert isinstance(store, MemoryRunStore)
    return store.stored_step(run_id, seq).state is not None


def _item(store: DynamoRunStore, run_id: str, seq: int) -> dict[str, Any]:
    found = store._client.get_item(TableName=store.table, Key=items.step_key(run_id, seq))
    return dict(found["Item"])


def _chain(store: RunStore, count: int, change: Any) -> list[StepRecord]:
    """``count`` steps committed in order, each as a worker does it: read its slot, then
    commit; ``change(seq, state)`` gives each step's updates."""
    store.create_run(run(input=INPUT))
    state: dict[str, Any] = dict(INPUT)
    committed = []
    for seq in range(count):
        slot = store.read_slot("r1", seq)
        before = slot.run.input if seq == 0 and slot.run else slot.previous.state  # type: ignore[union-attr]
        assert before == state
        updates = change(seq, state)
        state = {**state, **updates}
        record = step(seq=seq, updates=updates, state=state)
        store.commit_step(record)
        committed.append(record)
    return committed


def _counter_and_log(seq: int, state: dict[str, Any]) -> dict[str, Any]:
    return {"n": seq, "log": [*state.get("log", []), f"entry {seq}"]}


@pytest.mark.slow  # every step read back several ways, on moto: make test, not make check
@pytest.mark.parametrize("reader", ["warm", "cold"])
def test_every_superstep_reads_back_whole(store: RunStore, reader: str) -> None:
    # Given a chain past two snapshots, each step changing a counter and appending to a list
    committed = _chain(store, 2 * K + 5, _counter_and_log)
    read = _cold(store) if reader == "cold" else store
    # Then each step reads back with its whole state and its merged updates, one by one,
    # by the slot read of the step after it, page by page, and as the run's latest
    for record in committed:
        got = read.get_step("r1", record.seq)
        assert got is not None and (got.state, got.updates) == (record.state, record.updates)
    for record in reversed(committed[:-1]):
        previous = _cold(read).read_slot("r1", record.seq + 1).previous
        assert previous is not None and previous.state == record.state
    listed, after = [], -1
    while page := read.list_steps("r1", after=after, limit=7).items:
        listed += page
        after = page[-1].seq
    assert [(s.seq, s.state, s.updates) for s in listed] == [
        (s.seq, s.state, s.updates) for s in committed
    ]
    assert _cold(read).get_run("r1").state == committed[-1].state


def test_the_full_state_is_kept_every_k_supersteps_only(store: RunStore) -> None:
    # Given a chain of small changes past two snapshot boundaries
    _chain(store, 2 * K + 2, _counter_and_log)
    # Then only the boundaries keep the whole state: the input is the state before step 0
    whole = [seq for seq in range(2 * K + 2) if _kept_whole(store, "r1", seq)]
    assert whole == [K - 1, 2 * K - 1]


def test_deltas_past_the_size_bound_start_a_snapshot(store: RunStore) -> None:
    # Given steps that each write a new 20 KB value
    size = 20 * 1024
    _chain(store, 6, lambda seq, state: {"blob": _text(size, seq)})
    # Then the state is kept whole once the deltas since the last full state pass the bound
    whole = [seq for seq in range(6) if _kept_whole(store, "r1", seq)]
    per_snapshot = deltas.SNAPSHOT_AFTER_BYTES // size + 1
    assert whole == [per_snapshot - 1, 2 * per_snapshot - 1][: len(whole)] and whole
    assert _cold(store).get_step("r1", 5).state["blob"] == _text(size, 5)  # type: ignore[union-attr]


def test_a_large_value_that_did_not_change_is_not_written_again(
    dynamo_store: DynamoRunStore,
) -> None:
    # Given a 100 KB value written once, then written again unchanged by every later step
    blob = _text(100 * 1024, 1)
    _chain(dynamo_store, 4, lambda seq, state: {"blob": blob, "n": seq})
    # Then the later steps' items hold its key only, and it reads back
    for seq in (1, 2, 3):
        item = _item(dynamo_store, "r1", seq)
        assert items.item_size(item) < 1024
        assert items.json_value(item["delta"]) == {"set": {"n": seq}, "keys": ["blob"]}
    assert _cold(dynamo_store).get_step("r1", 3).updates == {"blob": blob, "n": 3}  # type: ignore[union-attr]


def test_a_growing_list_stores_only_what_was_added(dynamo_store: DynamoRunStore) -> None:
    # Given an agent's message list that grows by one 2 KB message a step
    def add(seq: int, state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [*state.get("messages", []), _text(2048, seq)]}

    _chain(dynamo_store, 20, add)
    # Then each step's item holds its new message only, not the conversation so far
    item = _item(dynamo_store, "r1", 19)
    assert items.item_size(item) < 3 * 1024
    assert items.json_value(item["delta"]) == {"append": {"messages": [_text(2048, 19)]}}
    assert len(_cold(dynamo_store).get_run("r1").state["messages"]) == 20


def test_a_commit_that_does_not_know_the_state_before_keeps_it_whole(
    dynamo_store: DynamoRunStore,
) -> None:
    # Given a run whose step 0 was committed by another worker
    _chain(dynamo_store, 1, _counter_and_log)
    other = _cold(dynamo_store)
    # When a store that never read the run commits step 1 (a cancel from the API, say)
    record = step(seq=1, updates={"n": 1}, state={**INPUT, "n": 1, "log": ["entry 0"]})
    other.commit_step(record)
    # Then it keeps the whole state: it cannot prove a delta right
    assert _kept_whole(other, "r1", 1)
    assert _cold(other).get_step("r1", 1).state == record.state  # type: ignore[union-attr]


def test_a_step_whose_state_is_not_the_state_before_plus_its_updates_is_kept_whole(
    store: RunStore,
) -> None:
    # Given step 0 committed as a worker does
    _chain(store, 1, _counter_and_log)
    store.read_slot("r1", 1)
    # When step 1's state is not step 0's plus its updates (a record built another way)
    record = step(seq=1, updates={"n": 1}, state={"n": 1}, started_at=T0 + 9)
    store.commit_step(record)
    # Then it is kept whole, and reads back as written
    assert _kept_whole(store, "r1", 1)
    assert _cold(store).get_step("r1", 1).state == {"n": 1}  # type: ignore[union-attr]


def test_a_delta_without_its_base_is_refused() -> None:
    # A delta read without the full state it builds on cannot be rebuilt: an error, never a
    # partial state
    with pytest.raises(LookupError):
        deltas.rebuild([deltas.Stored(5, {"set": {"n": 5}})])
    assert deltas.base_of(K + 3) == K - 1 and deltas.base_of(3) == deltas.HEADER


def test_a_listing_without_states_shows_the_steps_and_reads_no_state(store: RunStore) -> None:
    # Given a chain past a snapshot, read by a store that knows no state (a cold worker)
    committed = _chain(store, K + 5, _counter_and_log)
    read = _cold(store)
    # When its steps are listed without states, page by page from past the snapshot
    listed, after = [], K
    while page := read.list_steps("r1", after=after, limit=2, states=False).items:
        listed += page
        after = page[-1].seq

    # Then each step shows what a listing shows, its state and updates left empty
    def shown(s: StepRecord) -> tuple[Any, ...]:
        return (s.seq, s.node, s.status, s.run_status, s.next_node, s.started_at, s.error)

    assert [shown(s) for s in listed] == [shown(s) for s in committed[K + 1 :]]
    assert all(s.state == {} and s.updates == {} for s in listed)


def test_a_listing_without_states_reads_the_page_alone(dynamo_store: DynamoRunStore) -> None:
    # Given a chain past a snapshot and a cold store
    _chain(dynamo_store, K + 5, _counter_and_log)
    read = _cold(dynamo_store)
    queries: list[dict[str, Any]] = []
    read._client.meta.events.register(
        "provide-client-params.dynamodb.Query", lambda params, **_: queries.append(params)
    )
    # When two steps after the snapshot are listed without states
    page = read.list_steps("r1", after=K + 1, limit=2, states=False)
    # Then one query reads those two items only, without their deltas and states
    assert [s.seq for s in page.items] == [K + 2, K + 3]
    assert len(queries) == 1 and queries[0]["Limit"] == 2
    assert queries[0]["ExpressionAttributeValues"][":first"] == {"S": items.step_sk(K + 2)}
    projected = set(queries[0]["ExpressionAttributeNames"].values())
    assert not projected & {"delta", "state", "notified"}


DAY = 86_400


def test_log_items_expire_retention_after_they_were_written(dynamodb: Any, clock: Any) -> None:
    # Given a store whose log items are kept 30 days, its clock at T0
    store = DynamoRunStore("hopgraph-contract", dynamodb, clock=clock, retention_s=30 * DAY)
    store.create_run(run(input=INPUT))
    # When a step, a counted task and a failed attempt are written, a day apart
    store.commit_step(step(seq=0, state={**INPUT, "n": 0}, updates={"n": 0}))
    clock.now += DAY
    store.commit_task(TaskRecord(
        run_id="r1", seq=1, node="b", index=None, tool="emit", status="ok", updates={"x": 1},
        targets=(), started_at=T0, duration_ms=1.0,
    ), counted=True)  # fmt: skip
    clock.now += DAY
    store.commit_attempt(AttemptRecord(
        run_id="r1", seq=1, node="c", index=None, attempt=1, tool="t", error="boom",
        error_type="RuntimeError", started_at=T0, duration_ms=1.0, retry_at=None,
    ))  # fmt: skip

    # Then each carries the table's TTL attribute: 30 days after it was written
    def expires(sk: str) -> int | None:
        item = dynamodb.get_item(TableName=store.table,
                                 Key={"PK": {"S": "RUN#r1"}, "SK": {"S": sk}})["Item"]  # fmt: skip
        return int(item["expires_at"]["N"]) if "expires_at" in item else None

    assert expires(items.step_sk(0)) == int(T0) + 30 * DAY
    assert expires("TASK#000001#-#b") == int(T0) + 31 * DAY
    assert expires("FANIN#000001") == int(T0) + 31 * DAY
    assert expires("ATTEMPT#000001#-#0001#c") == int(T0) + 32 * DAY
    # And the run header never expires
    assert expires("RUN") is None


def test_without_retention_log_items_do_not_expire(dynamo_store: DynamoRunStore) -> None:
    _chain(dynamo_store, 2, _counter_and_log)
    assert "expires_at" not in _item(dynamo_store, "r1", 1)


def test_a_step_whose_full_state_was_deleted_by_the_ttl_is_not_found(
    dynamo_store: DynamoRunStore,
) -> None:
    # Given a chain past a snapshot, whose oldest items DynamoDB's TTL deleted first: the
    # snapshot, not yet the deltas after it
    _chain(dynamo_store, K + 3, _counter_and_log)
    for seq in range(K):
        dynamo_store._client.delete_item(TableName=dynamo_store.table,
                                         Key=items.step_key("r1", seq))  # fmt: skip
    # When a cold reader reads a step whose state rebuilds from the deleted snapshot
    # Then the step is not found (404), not a server error; the later steps still read
    with pytest.raises(NotFoundError):
        _cold(dynamo_store).get_step("r1", K)


@pytest.mark.parametrize("reader", ["warm", "cold"])
def test_a_state_read_back_is_the_readers_own(store: RunStore, reader: str) -> None:
    # Given a chain past a snapshot, read back by a reader that changes what it read
    committed = _chain(store, K + 2, _counter_and_log)
    read = _cold(store) if reader == "cold" else store
    for got in (read.get_step("r1", K + 1), read.get_step("r1", K - 1), read.get_run("r1")):
        assert got is not None
        got.state["n"] = "changed by a reader"
        got.state.pop("log")
    for page in read.list_steps("r1").items:
        page.state.clear()
    # Then every later read still gets the state as committed: the last step, a snapshot, the run
    assert read.get_step("r1", K + 1).state == committed[-1].state  # type: ignore[union-attr]
    assert read.get_step("r1", K - 1).state == committed[K - 1].state  # type: ignore[union-attr]
    assert read.get_run("r1").state == committed[-1].state
    assert [s.state for s in read.list_steps("r1").items] == [s.state for s in committed]
