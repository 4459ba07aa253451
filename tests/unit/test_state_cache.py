"""The state cache of the stores (engine/deltas.py): a step's state is kept once."""

from __future__ import annotations

from typing import Any

from engine.deltas import StateCache


class Counted:
    """A value that counts how often it is serialized (``default=str`` calls ``__str__``)."""

    def __init__(self) -> None:
        self.serialized = 0

    def __str__(self) -> str:
        self.serialized += 1
        return "counted"


def test_the_same_steps_state_is_serialized_once() -> None:
    # Given a cache holding a run's state after step 3
    cache, value = StateCache(), Counted()
    state: dict[str, Any] = {"docs": [0] * 10, "value": value}
    cache.put("r1", 3, state, 0)

    # When every task of a map puts the same step's state again, and an older one comes
    for _ in range(5):
        cache.put("r1", 3, state, 0)
    cache.put("r1", 2, {"docs": []}, 0)

    # Then it was serialized once, and the cache answers that state
    assert value.serialized == 1
    assert cache.get("r1") == (3, {"docs": [0] * 10, "value": "counted"}, 0)


def test_a_later_step_or_a_new_count_replaces_the_entry() -> None:
    # Given a run's state after step 3, its delta count unknown
    cache = StateCache()
    cache.put("r1", 3, {"n": 3}, -1)

    # When the same step comes with its count, and then a later step
    cache.put("r1", 3, {"n": 3}, 120)
    known = cache.get("r1")
    cache.put("r1", 4, {"n": 4}, 0)

    # Then each replaced the entry
    assert known == (3, {"n": 3}, 120)
    assert cache.get("r1") == (4, {"n": 4}, 0)
