"""Fitting events to API Gateway's WebSocket message size (engine/events.py:fit)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import MESSAGE_LIMIT, encode, fit, run_event

RUN = "r_fit"


def step(updates: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "step", "run_id": RUN, "ts": "t", "seq": 4, "node": "n", "tool": "t",
            "status": "ok", "updates": updates, **extra}  # fmt: skip


def test_an_event_within_the_limit_is_left_as_it_is() -> None:
    event = step({"count": 1})
    assert fit(event) is event


def test_only_the_largest_values_are_summarized_and_the_event_says_where_to_read_them() -> None:
    # Given a final state with two large values (each under the size that makes a value a
    # pointer, engine/blobs.py) and a small one, over the limit together
    state = {"a": "x" * 64_000, "b": "y" * 60_000, "c": "z" * 10_000, "n": 3}
    event = run_event(RUN, "completed", 0.0, state=state, steps=2)
    # When it is fitted
    cut = fit(event)
    # Then the largest value alone is summarized (enough to fit); the rest stays readable
    assert cut["state"] == {"a": {"truncated": True, "size": 64_002}, "b": "y" * 60_000,
                            "c": "z" * 10_000, "n": 3}  # fmt: skip
    assert cut["truncated"] == ["state"] and cut["fetch"] == f"/runs/{RUN}"
    assert len(encode(cut)) <= MESSAGE_LIMIT
    assert event["state"]["a"] == "x" * 64_000  # the original is untouched


def test_a_value_over_64_kb_travels_as_its_pointer_and_where_to_fetch_it() -> None:
    # Given a final state with a 90 KB value
    event = run_event(RUN, "completed", 0.0, state={"a": "x" * 90_000, "n": 3}, steps=2)
    # Then the event carries its pointer (content-addressed) and the route that returns it
    pointer = event["state"]["a"]
    assert pointer["bytes"] == 90_002 and pointer["$blob"].startswith("sha256:")
    assert pointer["href"] == f"/runs/{RUN}/values/{pointer['$blob']}"
    assert fit(event) is event


def test_many_small_values_are_summarized_as_a_whole() -> None:
    event = step({f"k{i}": "v" * 500 for i in range(400)})
    cut = fit(event)
    assert cut["updates"] == {"truncated": True, "size": len(encode(event["updates"]))}
    assert cut["fetch"] == f"/runs/{RUN}/steps?after=3&limit=1"


def test_a_huge_error_text_is_cut_too() -> None:
    cut = fit(step({"x": "z" * 150_000}, status="failed", error="e" * 140_000))
    assert cut["truncated"] == ["updates", "error"]
    assert cut["error"].endswith("... (truncated)") and len(encode(cut)) <= MESSAGE_LIMIT


def test_anything_else_too_large_leaves_the_identifying_fields() -> None:
    cut = fit({"type": "error", "action": "a" * 200_000, "message": "m", "extra": ["e"] * 70_000})
    assert cut == {"type": "error", "message": "m", "truncated": ["action", "extra"]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3_000),
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=8)
    ),
    max_leaves=60,
)


@pytest.mark.slow  # events of thousands of drawn values: make test, not make check
@settings(max_examples=60, deadline=None)
@given(
    updates=st.dictionaries(st.text(max_size=10), json_values, max_size=30),
    error=st.none() | st.text(max_size=5_000),
)
def test_whatever_an_event_holds_it_fits_a_small_limit(
    updates: dict[str, Any], error: str | None
) -> None:
    event = step(updates, error=error)
    assert len(encode(fit(event, limit=4_096))) <= 4_096
