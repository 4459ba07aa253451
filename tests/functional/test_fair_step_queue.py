"""The step queue is a fair queue: each hop carries its run as ``MessageGroupId``, so a run
whose map holds many hops in flight does not hold up another run's next hop.

Over moto with the fair-queue emulation (infra/moto/fair_queues.py) that the local stack and
these tests run, from SQS's published rules; the unit rules are in tests/unit/test_fair_queues.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.protocol import MAP_WINDOW
from tests.functional.aws_stack import AwsStack, aws_stack

ITEMS = 150
MAP = {
    "name": "wide",
    "entry": "item",
    "state": {"total": {"reducer": "add"}},
    "nodes": {
        "item": {
            "tool": "emit",
            "settings": {"key": "total", "value": 1},
            "map": {"over": "docs", "as": "doc"},
        }
    },
    "edges": {"item": "END"},
}
ONE_STEP = {
    "name": "small",
    "entry": "only",
    "nodes": {"only": {"tool": "emit", "settings": {"key": "total", "value": 1}}},
    "edges": {"only": "END"},
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with aws_stack(monkeypatch) as s:
        yield s


def receive(stack: AwsStack, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` hops taken off the step queue and held, as busy workers hold them."""
    taken: list[dict[str, Any]] = []
    while len(taken) < count:
        reply = stack.sqs.receive_message(
            QueueUrl=stack.urls["StepQueue"],
            MaxNumberOfMessages=min(10, count - len(taken)),
            VisibilityTimeout=300,
            AttributeNames=["All"],
        )
        if not reply.get("Messages"):
            break
        taken += reply["Messages"]
    return taken


def test_every_hop_names_its_run_as_its_message_group(stack: AwsStack) -> None:
    # Given a started map run, whose first window of hops is on the step queue
    svc = stack.service
    graph = svc.create_graph(MAP)[0]
    run = svc.start_run(graph.graph_id, {"docs": [0] * 12})[0]
    # Then each hop's message group is its run
    held = receive(stack, 12)
    assert len(held) == 12
    for message in held:
        assert message["Attributes"]["MessageGroupId"] == json.loads(message["Body"])["run_id"]
        assert message["Attributes"]["MessageGroupId"] == run.run_id


def test_a_one_step_run_is_delivered_before_a_wide_maps_waiting_hops(stack: AwsStack) -> None:
    # Given a wide map whose workers hold 40 of its hops, with the rest of its window waiting
    svc = stack.service
    wide = svc.start_run(svc.create_graph(MAP)[0].graph_id, {"docs": [0] * ITEMS})[0]
    held = receive(stack, 40)
    assert {json.loads(m["Body"])["run_id"] for m in held} == {wide.run_id}
    # When another run starts, its one hop sent after the map's waiting ones
    small = svc.start_run(svc.create_graph(ONE_STEP)[0].graph_id, {})[0]
    # Then the next worker to poll gets it first, and the map's waiting hops after it
    batch = receive(stack, 10)
    runs = [json.loads(m["Body"])["run_id"] for m in batch]
    assert runs[0] == small.run_id
    assert runs[1:] == [wide.run_id] * (len(runs) - 1)


def test_the_fair_order_loses_and_repeats_nothing(stack: AwsStack) -> None:
    # Given the same map and one-step run, and workers holding part of the map's window
    svc = stack.service
    wide = svc.start_run(svc.create_graph(MAP)[0].graph_id, {"docs": [0] * ITEMS})[0]
    held = receive(stack, 40)
    small = svc.start_run(svc.create_graph(ONE_STEP)[0].graph_id, {})[0]
    # When every message left is received
    rest = receive(stack, 1000)
    # Then each hop was delivered once: the map's first window, and the one run's hop
    hops = [json.loads(m["Body"]) for m in held + rest]
    delivered = [(hop["run_id"], hop.get("index")) for hop in hops]
    assert sorted(delivered, key=str) == sorted(
        [(wide.run_id, i) for i in range(MAP_WINDOW)] + [(small.run_id, None)], key=str
    )
