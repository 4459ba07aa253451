"""A redriven task runs at the attempt its log says (engine/history.py): the redrive's entry
records the attempt after the failed one, and the tool sees that attempt in
``ctx.attempt``, so that a tool which keys its behaviour on the attempt (a flaky service,
an idempotency key, a backoff of its own) goes on from where the failure left it."""

from __future__ import annotations

from typing import Any

from engine import history
from engine.toolkits.basics import toolkit as basics
from tests.worlds import Clock, World

QUICK = {"initial_interval_s": 0, "jitter": False}


def chain(call: dict[str, Any]) -> dict[str, Any]:
    return {"entry": "start",
            "nodes": {"start": {"tool": "record_visit"}, "call": call},
            "edges": {"start": "call", "call": "END"}}  # fmt: skip


def failed_then_redriven(doc: dict[str, Any]) -> tuple[World, str]:
    world = World(basics, clock=Clock(1_000.0), lease_s=60.0)
    run_id = world.start(doc)
    world.drain()
    assert world.store.get_run(run_id).status == "failed"
    history.redrive_run(world.service, run_id)
    world.drain()
    return world, run_id


def test_a_redriven_task_runs_at_the_attempt_its_log_says() -> None:
    # Given a run failed by a tool that succeeds at its second attempt (no retry policy)
    doc = chain({"tool": "flaky", "settings": {"succeed_on": 2}})
    # When it is redriven
    world, run_id = failed_then_redriven(doc)
    # Then the tool saw attempt 2, as the redrive's entry and the task's step say
    run = world.store.get_run(run_id)
    assert (run.status, run.error, run.state["attempts"]) == ("completed", None, 2)
    steps = world.store.list_steps(run_id, limit=10).items
    assert [(s.node, s.status, s.attempt) for s in steps] == [
        ("start", "ok", 1), ("call", "failed", 1), ("", "ok", 2), ("call", "ok", 2)]  # fmt: skip


def test_a_redrive_after_spent_retries_goes_on_from_the_last_attempt() -> None:
    # Given a task whose two attempts (its retry policy's all) failed, and that succeeds at 3
    doc = chain({"tool": "flaky", "settings": {"succeed_on": 3},
                 "retry": {**QUICK, "max_attempts": 2}})  # fmt: skip
    world, run_id = failed_then_redriven(doc)
    run = world.store.get_run(run_id)
    assert (run.status, run.state["attempts"]) == ("completed", 3)
    redrive = next(s for s in world.store.list_steps(run_id, limit=10).items if s.source)
    assert redrive.attempt == 3


def test_each_task_of_a_redriven_superstep_of_several_sees_the_redrives_attempt() -> None:
    doc = {"entry": "start", "state": {"visits": {"reducer": "append"}},
           "nodes": {"start": {"tool": "record_visit"},
                     "call": {"tool": "flaky", "settings": {"succeed_on": 2}},
                     "other": {"tool": "set_values", "settings": {"values": {"other": True}}}},
           "edges": {"start": ["call", "other"], "call": "END", "other": "END"}}  # fmt: skip
    world, run_id = failed_then_redriven(doc)
    run = world.store.get_run(run_id)
    assert (run.status, run.state["attempts"], run.state["other"]) == ("completed", 2, True)
