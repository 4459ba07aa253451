"""Malformed values fail at once, with a reason: never as an internal error retried as a crash."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidInputError
from engine.ports import Hop
from engine.reducers import REDUCERS, ReducerError
from engine.runner import InProcessRunner
from engine.toolkits.basics import toolkit as basics
from engine.validation import build_graph


@pytest.mark.parametrize("ident", [["a"], {"a": 1}])
def test_a_message_id_that_is_a_list_or_an_object_is_a_reducer_error(ident: Any) -> None:
    # Given a message whose id is unhashable, in the update or already in the state
    for current, update in ([], [{"id": ident}]), ([{"id": ident}], [{"id": "x"}]):
        # When the messages reducer merges it, then it is refused saying why
        with pytest.raises(ReducerError, match="message id must be a string or a number"):
            REDUCERS["messages"](current, update)


def test_a_run_whose_tool_returns_such_a_message_fails_once_with_the_reason() -> None:
    # Given a graph whose node emits a message with a list as its id
    doc = {
        "entry": "emit",
        "state": {"messages": {"reducer": "messages"}},
        "nodes": {"emit": {"tool": "emit", "settings": {"key": "messages", "value": {"id": [1]}}}},
        "edges": {"emit": "END"},
    }
    # When it runs
    result = InProcessRunner(basics).run(build_graph(doc, basics.names()), {})
    # Then the run fails with the reducer's reason, after one attempt
    assert result.status == "failed"
    assert "message id must be a string or a number" in (result.error or "")


GOOD = {"run_id": "r1", "graph_id": "g1", "seq": 0, "node": "a"}


@pytest.mark.parametrize(
    "patch",
    [
        {"node": ["a"]},
        {"node": {"a": 1}},
        {"graph_id": ["g1"]},
        {"run_id": {"r": 1}},
        {"seq": 1.5},
        {"parallel": "false"},
        {"recheck": [True]},
        {"index": [0]},
    ],
)
def test_a_hop_with_fields_of_the_wrong_type_is_not_a_hop(patch: dict[str, Any]) -> None:
    # Given a hop message whose field holds a list, an object or another type
    # When it is read, then it is refused at once as not a hop
    with pytest.raises(InvalidInputError, match="not a hop message"):
        Hop.from_dict({**GOOD, **patch})


def test_a_well_formed_hop_is_read() -> None:
    hop = Hop.from_dict({**GOOD, "parallel": True, "index": 2})
    assert (hop.node, hop.index, hop.parallel) == ("a", 2, True)


def test_what_a_hop_no_longer_carries_is_ignored_whatever_it_holds() -> None:
    # An older message, or a forged one: its state and step limit are never read
    hop = Hop.from_dict({**GOOD, "state": ["not", "an", "object"], "max_steps": [10]})
    assert hop == Hop.from_dict(GOOD)
