"""Finding a graph by its content: the same canonical definition, for the same owner, is one
graph whatever dialect or key order it was sent in; anything else is a graph of its own."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from engine.errors import ConflictError
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import GraphRecord
from engine.service import RunService, content_graph_id
from engine.tools import ToolContext, Toolkit

tools = Toolkit("graph-reuse-tests")


@tools.tool
def count(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


CHAIN = {
    "name": "chain",
    "entry": "first",
    "nodes": {"first": {"tool": "count"}, "second": {"tool": "count"}},
    "edges": {"first": "second", "second": "END"},
}


@pytest.fixture
def service() -> RunService:
    ticks = itertools.count()
    return RunService(
        MemoryRunStore(), MemoryQueue(), tools, clock=lambda: 1_700_000_000.0 + next(ticks)
    )


def test_the_same_content_is_found_instead_of_copied(service: RunService) -> None:
    # Given a graph created by content
    first, _, created = service.find_or_create_graph(CHAIN)
    # When the same definition comes again, its keys in another order
    again, _, created_again = service.find_or_create_graph(dict(reversed(CHAIN.items())))
    # Then the first is answered, unchanged, and nothing else is stored
    assert (created, created_again) == (True, False)
    assert again == first
    assert [g.graph_id for g in service.store.list_graphs().items] == [first.graph_id]


def test_other_content_or_another_owner_is_another_graph(service: RunService) -> None:
    # Given a graph created by content for alice
    alices, _, _ = service.find_or_create_graph(CHAIN, owner="alice")
    # When bob sends the same definition, and alice a different one
    bobs, _, bob_created = service.find_or_create_graph(CHAIN, owner="bob")
    other = {**CHAIN, "edges": {"first": "END"}, "nodes": {"first": {"tool": "count"}}}
    alices_other, _, other_created = service.find_or_create_graph(other, owner="alice")
    # Then each is a graph of its own
    assert bob_created and other_created
    assert len({alices.graph_id, bobs.graph_id, alices_other.graph_id}) == 3
    assert bobs.owner == "bob"


def test_a_plain_create_still_makes_a_copy(service: RunService) -> None:
    # Given a graph created by content
    found, _, _ = service.find_or_create_graph(CHAIN)
    # When the same definition is created the plain way
    copy, _ = service.create_graph(CHAIN)
    # Then that is a new graph, and finding by content still answers the first
    assert copy.graph_id != found.graph_id
    assert service.find_or_create_graph(CHAIN)[0].graph_id == found.graph_id


def test_an_id_taken_by_other_content_is_a_conflict(service: RunService) -> None:
    # Given another definition stored under the id CHAIN's content maps to (a hash collision)
    graph_id = content_graph_id(service.find_or_create_graph(CHAIN)[0].definition, "carol")
    squatter = GraphRecord(graph_id, "other", {"entry": "x"}, 0.0, "carol")
    service.store.put_graph(squatter)
    # When CHAIN is found or created for carol
    # Then it is refused rather than answered with the other graph
    with pytest.raises(ConflictError, match="other content"):
        service.find_or_create_graph(CHAIN, owner="carol")
