"""A run's header read alone (``RunStore.get_run_header``): what a request's visibility check
needs (owner, status, graph) without the run's state, on every store; and, on DynamoDB, the
bytes and read units it costs next to ``get_run``'s."""

from __future__ import annotations

import math
import random
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from contract_records import T0, final_step, run, step

from engine.errors import RunNotFound
from engine.ports import RunEnd, RunStore
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_store import DynamoRunStore

HEADER_FIELDS = (
    "run_id", "graph_id", "status", "max_steps", "created_at", "updated_at", "error",
    "idempotency_key", "owner", "input_digest", "parent", "parent_run_id", "parent_seq",
    "breakpoints",
)  # fmt: skip
"""What a header read gives as the run has it."""


def _header_fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in HEADER_FIELDS}


def test_a_run_header_is_the_run_without_what_it_holds(store: RunStore) -> None:
    # Given a run of alice's, forked from another, with two committed steps
    started = run(owner="alice", idempotency_key="k1", input_digest="d1", parent_run_id="r0",
                  parent_seq=3, breakpoints={"before": ["a"], "after": []})  # fmt: skip
    store.create_run(started)
    store.commit_step(step(seq=0))
    store.commit_step(step(seq=1))

    # When its header is read
    header = store.get_run_header("r1")

    # Then it is the run's header as get_run shows it, without the input or any step's view
    assert _header_fields(header) == _header_fields(store.get_run("r1"))
    assert header.owner == "alice" and header.status == "running" and header.graph_id == "g1"
    assert (header.input, header.state, header.node, header.steps) == ({}, {}, None, 0)


def test_a_run_header_moves_with_the_run(store: RunStore) -> None:
    # Given a run that failed on its second step
    store.create_run(run(owner="bob"))
    store.commit_step(step(seq=0))
    store.commit_step(final_step(seq=1, status="failed"), RunEnd("failed", "tool t failed: x"))

    # When its header is read
    header = store.get_run_header("r1")

    # Then it shows where the run stands now
    assert (header.status, header.error) == ("failed", "tool t failed: x")
    assert header.updated_at == store.get_run("r1").updated_at == T0 + 2


def test_an_unknown_run_has_no_header(store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        store.get_run_header("nope")


# -- what a header read costs on DynamoDB ------------------------------------------------
@dataclass
class Reads:
    """Bytes of items DynamoDB returned (``dynamodb_items.item_size``: its own sizing), and
    the read units it bills for them, strongly consistent: a request's items (a GetItem's
    one, a Query's all together) per started 4 KB."""

    requests: int = 0
    bytes: int = 0
    units: int = 0

    def count(self, parsed: dict[str, Any], **_: Any) -> None:
        found = [parsed["Item"]] if "Item" in parsed else parsed.get("Items", [])
        size = sum(items.item_size(item) for item in found)
        self.requests += 1
        self.bytes += size
        self.units += max(1, math.ceil(size / 4096))


@contextmanager
def reads_of(client: Any) -> Iterator[Reads]:
    reads = Reads()
    client.meta.events.register("after-call.dynamodb", reads.count)
    try:
        yield reads
    finally:
        client.meta.events.unregister("after-call.dynamodb", reads.count)


def test_a_header_read_reads_none_of_a_large_state(dynamo_store: DynamoRunStore) -> None:
    # Given a run whose latest step holds a state of 100 KB (that compression cannot shrink)
    rng = random.Random(7)
    big = "".join(rng.choice(string.ascii_letters) for _ in range(100 * 1024))
    dynamo_store.create_run(run(owner="alice"))
    dynamo_store.commit_step(step(seq=0, updates={"big": big}, state={"big": big}))
    # read by another process, as an API request is (no state cached)
    cold = DynamoRunStore(dynamo_store.table, dynamo_store._client, clock=dynamo_store._clock)

    # When one request reads the run and another only its header
    with reads_of(dynamo_store._client) as whole:
        full = cold.get_run("r1")
    with reads_of(dynamo_store._client) as header_only:
        header = cold.get_run_header("r1")

    # Then both say who owns the run, and the header read is one small item, one read unit
    assert full.owner == header.owner == "alice" and full.state["big"] == big
    assert whole.bytes > 70 * 1024 and whole.units >= 18
    assert (header_only.requests, header_only.units) == (1, 1)
    assert header_only.bytes < 1024
