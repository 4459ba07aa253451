"""Retries, timeouts and error routes: the declarations (checked once, with locations), the
in-process runs (LangGraph's ``RetryPolicy`` semantics), and the protocol's rules for a
failed attempt over the in-memory adapters (one copy schedules the retry, a crash after the
attempt's commit recovers without running the tool again, a lost retry is swept)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.errors import GraphValidationError
from engine.memory import MemoryRunStore
from engine.ports import Hop
from engine.retry_policy import ERROR_KEY, RetryPolicy, raised_from
from engine.runner import InProcessRunner, PoolQueue
from engine.tools import ToolContext, Toolkit, load_toolkits
from engine.validation import build_graph
from tests import worlds

tools = Toolkit("retry-tests")
calls: list[tuple[str, int]] = []
release = threading.Event()


@tools.tool
def flaky(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Fails with ConnectionError until its ``fail_times`` calls are spent."""
    calls.append((ctx.task, ctx.attempt))
    if sum(1 for task, _ in calls if task == ctx.task) <= state.get("fail_times", 0):
        raise ConnectionError(f"flaky call {len(calls)}")
    return {"done": ctx.attempt}


@tools.tool
def wrong(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    calls.append((ctx.task, ctx.attempt))
    raise ValueError("not a retryable mistake")


@tools.tool
def slow(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    release.wait(10)
    return {"late": True}


@tools.tool
async def slow_async(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    await asyncio.sleep(10)
    return {"late": True}


@tools.tool
def apologise(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"apology": f"sorry: {state[ERROR_KEY]['type']}"}


@tools.tool
def mark(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"marked": True}


QUICK = {"initial_interval_s": 0, "jitter": False}


def graph(node: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "entry": "call",
        "nodes": {"call": node, "apologise": {"tool": "apologise"}},
        "edges": {"call": "END", "apologise": "END"},
    }
    if "on_error" not in node:
        del doc["nodes"]["apologise"], doc["edges"]["apologise"]
    doc.update(extra)
    return doc


@pytest.fixture(autouse=True)
def _fresh() -> None:
    calls.clear()
    release.clear()


# -- the declarations ---------------------------------------------------------------------------
def problems(doc: dict[str, Any], ceiling: float | None = None) -> dict[str, str]:
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, tools.names(), timeout_ceiling_s=ceiling)
    return {p.location: p.message for p in caught.value.problems}


def test_unknown_and_malformed_keys_are_refused_with_their_location() -> None:
    doc = graph({"tool": "flaky", "retry": {"max_attemps": 2, "backoff": 0.5, "jitter": "no"},
                 "on_error": "apologize"})  # fmt: skip
    doc["nodes"]["apologise"] = {"tool": "apologise"}
    doc["edges"]["apologise"] = "END"
    doc["defaults"] = {"retry": {"retry_on": "not a name!"}, "timeout": 3}
    found = problems(doc)
    assert "did you mean 'max_attempts'" in found["nodes.call.retry.max_attemps"]
    assert found["nodes.call.retry.backoff"] == "must be a number from 1 to 100"
    assert found["nodes.call.retry.jitter"] == "must be true or false"
    assert "did you mean 'apologise'" in found["nodes.call.on_error"]
    assert "exception type names" in found["defaults.retry.retry_on"]
    assert "did you mean 'timeout_s'" in found["defaults.timeout"]


def test_a_timeout_must_fit_in_the_worker() -> None:
    found = problems(graph({"tool": "slow", "timeout_s": 26}), ceiling=25)
    assert "does not fit in the worker" in found["nodes.call.timeout_s"]
    assert build_graph(graph({"tool": "slow", "timeout_s": 25}), tools.names(),
                       timeout_ceiling_s=25).nodes["call"].failure.timeout_s == 25  # fmt: skip


def test_defaults_fill_in_what_a_node_does_not_say_and_round_trip() -> None:
    doc = graph({"tool": "flaky", "on_error": "apologise"},
                defaults={"retry": True, "timeout_s": 9})  # fmt: skip
    built = build_graph(doc, tools.names())
    assert built.nodes["call"].failure.retry == RetryPolicy()  # LangGraph's defaults
    assert built.nodes["apologise"].failure.timeout_s == 9
    assert "apologise" in built.successors("call")
    assert build_graph(built.to_dict(), tools.names()) == built


def test_an_error_route_makes_its_node_reachable() -> None:
    # apologise is reached only by the error route: no "unreachable" problem
    built = build_graph(graph({"tool": "flaky", "on_error": "apologise"}), tools.names())
    assert built.nodes["call"].failure.on_error == "apologise"


def test_default_retry_on_is_langgraphs() -> None:
    policy = RetryPolicy()
    assert policy.retries(raised_from(ConnectionRefusedError()))  # a ConnectionError
    assert not policy.retries(raised_from(ValueError()))
    assert not policy.retries(raised_from(TimeoutError()))  # an OSError
    assert policy.retries(raised_from(Exception()))
    assert RetryPolicy(retry_on=("OSError",)).retries(raised_from(TimeoutError()))
    assert not policy.retries(None)  # an engine error


def test_the_interval_backs_off_to_its_ceiling_and_jitter_is_the_same_for_every_copy() -> None:
    policy = RetryPolicy(initial_interval_s=1, backoff=3, max_interval_s=5, jitter=False)
    assert [policy.interval(n, "x") for n in (1, 2, 3)] == [1, 3, 5]
    jittered = RetryPolicy(initial_interval_s=1)
    assert jittered.interval(1, "r:0:call:1") == jittered.interval(1, "r:0:call:1")
    assert 1 <= jittered.interval(1, "r:0:call:1") < 2


# -- runs in process ---------------------------------------------------------------------------
def test_a_flaky_tool_succeeds_on_its_third_attempt() -> None:
    store = MemoryRunStore()
    doc = graph({"tool": "flaky", "retry": {"max_attempts": 3, **QUICK}}, max_steps=1)
    result = InProcessRunner(tools, store=store).run(build_graph(doc, tools.names()),
                                                     {"fail_times": 2})  # fmt: skip
    # Retries do not count against the step limit (1 here)
    assert (result.status, result.state["done"], result.steps) == ("completed", 3, 1)
    assert calls == [("call", 1), ("call", 2), ("call", 3)]
    attempts = store.list_attempts(result.run_id, 0)
    assert [(a.attempt, a.error_type) for a in attempts] == [(1, "ConnectionError"),
                                                             (2, "ConnectionError")]  # fmt: skip
    assert result.log[0]["attempt"] == 3


def test_a_flaky_tool_gives_up_after_its_attempts() -> None:
    doc = graph({"tool": "flaky", "retry": {"max_attempts": 3, **QUICK}})
    result = InProcessRunner(tools).run(build_graph(doc, tools.names()), {"fail_times": 9})
    assert result.status == "failed"
    assert result.error is not None and "ConnectionError: flaky call 3" in result.error
    assert len(calls) == 3


def test_an_error_not_retried_fails_at_once_unless_named() -> None:
    doc = graph({"tool": "wrong", "retry": {"max_attempts": 3, **QUICK}})
    assert InProcessRunner(tools).run(build_graph(doc, tools.names())).status == "failed"
    assert len(calls) == 1
    calls.clear()
    named = graph({"tool": "wrong", "retry": {"retry_on": ["ValueError"], **QUICK}})
    assert InProcessRunner(tools).run(build_graph(named, tools.names())).status == "failed"
    assert len(calls) == 3


def test_an_error_route_goes_on_with_the_error_in_the_state() -> None:
    doc = graph({"tool": "flaky", "retry": {"max_attempts": 2, **QUICK},
                 "on_error": "apologise"})  # fmt: skip
    result = InProcessRunner(tools).run(build_graph(doc, tools.names()), {"fail_times": 5})
    assert result.status == "completed"
    assert result.state[ERROR_KEY] == {
        "node": "call", "task": "call", "type": "ConnectionError",
        "message": "tool 'flaky' failed: ConnectionError: flaky call 2", "attempts": 2,
    }  # fmt: skip
    assert result.state["apology"] == "sorry: ConnectionError"
    assert [e["node"] for e in result.log] == ["call", "apologise"]


def test_a_sync_tool_past_its_timeout_fails_with_timeout_error() -> None:
    doc = graph({"tool": "slow", "timeout_s": 0.05, "on_error": "apologise"})
    try:
        result = InProcessRunner(tools).run(build_graph(doc, tools.names()))
    finally:
        release.set()  # the abandoned thread ends; its late result is discarded
    assert result.status == "completed"
    assert result.state[ERROR_KEY]["type"] == "TimeoutError"
    assert "late" not in result.state


def test_an_async_tool_is_cancelled_at_its_timeout_and_retried_when_named() -> None:
    doc = graph({"tool": "slow_async", "timeout_s": 0.05,
                 "retry": {"retry_on": ["TimeoutError"], "max_attempts": 2, **QUICK}})  # fmt: skip
    store = MemoryRunStore()
    result = InProcessRunner(tools, store=store).run(build_graph(doc, tools.names()))
    assert result.status == "failed"
    assert result.error is not None and "TimeoutError" in result.error
    assert [a.error_type for a in store.list_attempts(result.run_id, 0)] == ["TimeoutError"]


def test_a_flaky_branch_retries_while_the_other_branch_commits() -> None:
    doc = {
        "entry": "start",
        "nodes": {"start": {"tool": "mark"}, "call": {"tool": "flaky", "retry": QUICK},
                  "other": {"tool": "mark"}},
        "edges": {"start": ["call", "other"], "call": "END", "other": "END"},
    }  # fmt: skip
    result = InProcessRunner(tools).run(build_graph(doc, tools.names()), {"fail_times": 2})
    assert (result.status, result.state["done"], result.steps) == ("completed", 3, 2)


# -- the protocol's rules ------------------------------------------------------------------------
def World(**config: Any) -> worlds.World:
    """The protocol's world over this module's tools."""
    return worlds.World(tools, **config)


RETRIED = graph({"tool": "flaky", "retry": {"max_attempts": 3, "initial_interval_s": 10,
                                             "jitter": False}})  # fmt: skip


def test_exactly_one_copy_of_a_duplicated_failing_hop_schedules_the_retry() -> None:
    world = World()
    run_id = world.start(RETRIED, {"fail_times": 5})
    hop = world.queue.hops.popleft()
    # When the first attempt's hop is delivered twice, and both copies fail
    assert world.deliver(hop) == "retrying"
    assert world.deliver(hop) == "duplicate"
    # Then one attempt is recorded and one retry sent, held for its interval
    assert len(world.store.list_attempts(run_id, 0)) == 1
    (retry,) = world.queue.hops
    assert (retry.attempt, retry.delay_s) == (2, 10)
    assert world.store.get_run(run_id).steps == 0


def test_a_crash_after_the_attempt_commit_sends_the_retry_without_running_the_tool() -> None:
    world = World()
    run_id = world.start(RETRIED, {"fail_times": 5})
    hop = world.queue.hops.popleft()
    assert world.deliver(hop, "d1") == "retrying"
    world.queue.hops.clear()  # the worker died before its dispatch reached the queue
    # When the same delivery comes back (a redelivery of the message)
    assert world.service.process_hop(hop, "d1", attempt=2) == "recovered"
    # Then the retry is sent, and the tool did not run again
    assert [h.attempt for h in world.queue.hops] == [2]
    assert len(calls) == 1
    assert len(world.store.list_attempts(run_id, 0)) == 1


def test_a_retry_hop_no_attempt_scheduled_is_stale() -> None:
    world = World()
    run_id = world.start(RETRIED, {"fail_times": 5})
    first = world.queue.hops.popleft()
    forged = Hop(run_id, first.graph_id, 0, "call", attempt=3)
    assert world.deliver(forged) == "stale"
    assert calls == []


def test_a_retry_hop_that_comes_early_is_held_again() -> None:
    world = World()
    world.start(RETRIED, {"fail_times": 5})
    assert world.deliver(world.queue.hops.popleft()) == "retrying"
    retry = world.queue.hops.popleft()
    world.clock.now += 3  # SQS held it 3 s of its 10 (a delay above 900 s is cut to 900)
    assert world.deliver(retry) == "retrying"
    (held,) = world.queue.hops
    assert (held.attempt, held.delay_s) == (2, 7)
    assert len(calls) == 1


def test_a_lost_retry_is_sent_by_the_sweeper_once_due_and_the_lease_passed() -> None:
    world = World(lease_s=60)
    run_id = world.start(RETRIED, {"fail_times": 1})
    assert world.deliver(world.queue.hops.popleft()) == "retrying"
    world.queue.hops.clear()  # the delayed retry is lost
    world.clock.now += 65  # past the slot's lease, but not past retry_at + lease (70)
    assert world.service.sweep() == {}
    world.clock.now += 10
    assert world.service.sweep() == {run_id: 1}
    (swept,) = world.queue.hops
    assert (swept.attempt, swept.recheck) == (2, True)
    world.queue.drain(world.deliver)
    assert world.store.get_run(run_id).status == "completed"


def test_without_delays_the_sweeper_sends_each_retry_when_due() -> None:
    # Self-invocation cannot hold a hop: the attempt record waits, and the sweeper sends it
    world = World(lease_s=60, sweeper_delays=True)
    run_id = world.start(RETRIED, {"fail_times": 1})
    assert world.deliver(world.queue.hops.popleft()) == "retrying"
    assert not world.queue.hops
    world.clock.now += 9
    assert world.service.sweep() == {}
    world.clock.now += 1
    assert world.service.sweep() == {run_id: 1}
    world.queue.drain(world.deliver)
    assert world.store.get_run(run_id).status == "completed"


def test_the_pool_holds_a_delayed_hop_until_its_time() -> None:
    applied: list[Hop] = []
    queue = PoolQueue(applied.append, threads=2)
    queue.dispatch(Hop("r", "g", 0, "call", attempt=2, delay_s=30))
    queue.dispatch(Hop("r", "g", 0, "other", delay_s=0.05))
    assert applied == []  # neither is due when dispatched
    deadline = time.monotonic() + 10
    while not applied and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [h.node for h in applied] == ["other"]  # the 30 s one is still held


def test_the_readme_example_is_a_valid_graph() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Retries, timeouts, error routes and timers") :]
    doc = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    basics = load_toolkits(["engine.toolkits.basics"])
    built = build_graph(doc, set(basics.names()), toolkit=basics)
    assert built.nodes["call"].failure.on_error == "fallback"
    assert built.nodes["fallback"].failure.retry == RetryPolicy(max_attempts=3)
    assert built.nodes["cool_down"].wait is not None


def test_a_retried_map_item_starts_the_next_item_at_its_first_attempt() -> None:
    # Given a map of 3 items, one at a time, whose tool fails twice per item
    doc = {
        "entry": "call",
        "state": {"done": {"reducer": "append"}},
        "nodes": {"call": {"tool": "flaky", "retry": QUICK,
                           "map": {"over": "items", "as": "item", "max_concurrency": 1}}},
        "edges": {"call": "END"},
    }  # fmt: skip
    store = MemoryRunStore()
    result = InProcessRunner(tools, store=store).run(
        build_graph(doc, tools.names()), {"items": [1, 2, 3], "fail_times": 2}
    )
    # Then every item ran its three attempts, each started by the one before it
    assert result.status == "completed"
    assert sorted(calls) == sorted((f"call[{i}]", n) for i in range(3) for n in (1, 2, 3))
    assert len(store.list_attempts(result.run_id, 0)) == 6
