"""Putting a run's replayed and live WebSocket events back in step order
(infra/cli/step_order.py)."""

from __future__ import annotations

from typing import Any

from infra.cli.step_order import StepOrder


def step(seq: int) -> dict[str, Any]:
    return {"type": "step", "seq": seq}


def final(steps: int) -> dict[str, Any]:
    return {"type": "run", "status": "completed", "steps": steps}


def feed(order: StepOrder, events: list[dict[str, Any]]) -> list[Any]:
    out = [e for event in events for e in order.add(event)]
    return [e.get("seq", e.get("status")) for e in out]


def test_early_steps_wait_for_the_ones_before_them_and_repeats_are_dropped() -> None:
    # Given a live step 2 that overtook the replay of 0 and 1, and a step that came both ways
    arrivals = [step(0), step(2), step(1), step(2), step(1), step(3)]
    # Then each step comes out once, in order
    assert feed(StepOrder(), arrivals) == [0, 1, 2, 3]


def test_the_final_event_waits_for_every_step_it_counts() -> None:
    order = StepOrder()
    assert feed(order, [step(0), final(3)]) == [0]
    assert order.gap and not order.done
    assert feed(order, [step(2), step(1)]) == [1, 2, "completed"]
    assert order.done and not order.gap
    assert feed(order, [step(1)]) == []  # nothing after the end


def test_after_skips_the_steps_already_seen() -> None:
    assert feed(StepOrder(after=1), [step(0), step(1), step(2), final(3)]) == [2, "completed"]


def test_a_running_status_passes_through_and_opens_a_gap_if_it_counts_missing_steps() -> None:
    order = StepOrder()
    running = {"type": "run", "status": "running", "steps": 2}
    assert feed(order, [step(0), running]) == [0, "running"]
    assert order.gap and order.next_seq == 1  # subscribe again after seq 0
