"""A tool's view of the state: read-only at the top, and what it reads is its own."""

from __future__ import annotations

from typing import Any

import pytest

from engine.state_view import StateView, detached


def test_the_view_cannot_be_written() -> None:
    view = StateView({"n": 1})
    with pytest.raises(TypeError):
        view["n"] = 2  # type: ignore[index]


def test_a_list_read_is_the_readers_own_and_stays_so_for_the_task() -> None:
    # Given a state with a list of dicts, a set and a scalar
    state: dict[str, Any] = {"items": [{"n": 1}], "tags": {"a"}, "count": 3}
    view = StateView(state)
    # When a tool changes what it read, in place, and reads it again
    items = view["items"]
    items.append({"n": 2})
    items[0]["n"] = 10
    view["tags"].add("b")
    # Then it sees its own changes, and the state it was given is as it was
    assert view["items"] is items
    assert view["items"] == [{"n": 10}, {"n": 2}]
    assert view["tags"] == {"a", "b"}
    assert state == {"items": [{"n": 1}], "tags": {"a"}, "count": 3}
    assert view["count"] == 3


def test_the_view_reads_as_the_mapping_it_replaced() -> None:
    state = {"a": [1], "b": "x"}
    view = StateView(state)
    assert dict(view) == state == view
    assert {**view} == state
    assert view.copy() == state
    assert (view | {"c": 1}) == {"a": [1], "b": "x", "c": 1}
    assert ({"c": 1} | view) == {"c": 1, "a": [1], "b": "x"}
    assert view.get("missing", 5) == 5
    assert "a" in view and len(view) == 2 and list(view) == ["a", "b"]
    # and each of those answers is a copy: changing it leaves the state alone
    view.copy()["a"].append(2)
    assert state["a"] == [1]


def test_detached_copies_containers_only() -> None:
    inner = object()
    value = {"k": [inner, "s", 1, {"deep": [2]}]}
    copied = detached(value)
    assert copied == value
    assert copied is not value and copied["k"] is not value["k"]
    assert copied["k"][3]["deep"] is not value["k"][3]["deep"]
    assert copied["k"][0] is inner  # an object of another kind is shared
