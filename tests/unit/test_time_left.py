"""The worker checks the time its invocation has left before it starts a tool: a tool that
could not finish and commit in it is not started, and its delivery comes back in a fresh
invocation (a tool stopped midway by Lambda's timeout would leave side effects and no
record of them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from engine.deadlines import invocation_limit
from engine.errors import RetryLater
from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import RunService
from engine.tools import ToolContext, Toolkit
from functions.worker.hops import remaining_s
from infra.stack.lambda_context import LambdaContext

tools = Toolkit("time-left")
started: list[str] = []


@tools.tool
def slow_call(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    started.append(ctx.task)
    return {"called": True}


GRAPH = {"entry": "call", "nodes": {"call": {"tool": "slow_call", "timeout_s": 20}},
         "edges": {"call": "END"}}  # fmt: skip


def first_hop() -> tuple[RunService, Any]:
    started.clear()
    service = RunService(MemoryRunStore(), MemoryQueue(), tools)
    graph_id = service.create_graph(GRAPH)[0].graph_id
    service.start_run(graph_id, {})
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    return service, queue.hops.popleft()


def test_a_tool_that_cannot_finish_in_the_time_left_is_not_started() -> None:
    service, hop = first_hop()
    # 20 s of timeout and the commit's 5 s margin do not fit in 10 s
    with invocation_limit(10.0), pytest.raises(RetryLater, match="not started"):
        service.process_hop(hop, "d1")
    assert started == []
    # the redelivery, in a fresh invocation, runs it
    with invocation_limit(60.0):
        assert service.process_hop(hop, "d1", attempt=2) == "finished"
    assert started == ["call"]


def test_without_a_limit_in_process_every_tool_starts() -> None:
    service, hop = first_hop()
    assert service.process_hop(hop, "d1") == "finished"


def test_the_time_left_is_read_from_the_lambda_context() -> None:
    assert remaining_s(LambdaContext(timeout_s=30.0)) == pytest.approx(30.0, abs=1.0)
    assert remaining_s(object()) is None


def test_a_node_that_declares_no_timeout_is_started_however_little_time_is_left() -> None:
    started.clear()
    service = RunService(MemoryRunStore(), MemoryQueue(), tools)
    doc = {"entry": "call", "nodes": {"call": {"tool": "slow_call"}}, "edges": {"call": "END"}}
    service.start_run(service.create_graph(doc)[0].graph_id, {})
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    with invocation_limit(0.5):
        assert service.process_hop(queue.hops.popleft(), "d1") == "finished"
    assert started == ["call"]
