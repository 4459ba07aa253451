"""Subgraphs: a node that runs another graph as a child run.

LangGraph's subgraph how-tos (a subgraph sharing state keys with its parent; one with its own
keys, mapped in and out; ``Send`` to a compiled subgraph) are ported to
``examples/langgraph/`` and run in process beside LangGraph itself: both must end in the same
state. Then the durable protocol: the child's end finishes the parent's task exactly once,
whatever is delivered twice, the sweeper, cancel and failures both ways, and the owner rules.
"""

from __future__ import annotations

import json
import operator
import random
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from engine.errors import GraphValidationError
from engine.graph import Graph
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import RunRecord
from engine.runner import InProcessRunner
from engine.service import RunService
from engine.subgraphs import MAX_SUBGRAPH_DEPTH, ParentLink, child_run_id
from engine.toolkits.basics import toolkit as basics
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph
from examples.langgraph.toolkit import toolkit as ports
from tests.worlds import Clock, World

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "langgraph"
TOOLS = Toolkit("ports-and-basics")
TOOLS.include(basics)
TOOLS.include(ports)

CHILDREN = {
    "subgraph_shared": ["subgraph_shared_child"],
    "subgraph_mapped": ["subgraph_mapped_child"],
    "subgraph_send": ["subgraph_joke"],
    "subgraph_map": ["subgraph_joke"],
}
"""Each port, and the graphs its subgraph nodes name (created first)."""


@TOOLS.tool(writes=["out"])
def explode(state: Any, ctx: ToolContext) -> dict[str, Any]:
    """Fails its task, with a reason."""
    raise ValueError("the child's tool broke")


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return doc


def graph_of(doc: dict[str, Any]) -> Graph:
    return build_graph(doc, TOOLS.names(), toolkit=TOOLS)


def run(name: str, given: dict[str, Any]) -> Any:
    named = {example(c)["name"]: graph_of(example(c)) for c in CHILDREN[name]}
    return InProcessRunner(TOOLS, subgraphs=named).run(graph_of(example(name)), given)


# -- LangGraph's how-tos, in process ---------------------------------------------------------------
def test_a_subgraph_sharing_keys_with_its_parent_ends_as_in_langgraph() -> None:
    result = run("subgraph_shared", {"foo": "foo"})
    assert result.status == "completed", result.error
    assert result.state == langgraph_shared() == {"foo": "hi! foobar"}


def langgraph_shared() -> dict[str, Any]:
    from langgraph import graph

    class SubgraphState(TypedDict):
        foo: str
        bar: str

    class ParentState(TypedDict):
        foo: str

    sub = graph.StateGraph(SubgraphState)
    sub.add_node("subgraph_node_1", lambda s: {"bar": "bar"})
    sub.add_node("subgraph_node_2", lambda s: {"foo": s["foo"] + s["bar"]})
    sub.add_edge(graph.START, "subgraph_node_1")
    sub.add_edge("subgraph_node_1", "subgraph_node_2")
    parent = graph.StateGraph(ParentState)
    parent.add_node("node_1", lambda s: {"foo": "hi! " + s["foo"]})
    parent.add_node("node_2", sub.compile())
    parent.add_edge(graph.START, "node_1")
    parent.add_edge("node_1", "node_2")
    return dict(parent.compile().invoke({"foo": "foo"}))


def test_a_subgraph_with_its_own_keys_maps_them_in_and_out_as_in_langgraph() -> None:
    result = run("subgraph_mapped", {"foo": "foo"})
    assert result.status == "completed", result.error
    assert result.state == langgraph_mapped() == {"foo": "hi! foobaz"}


def langgraph_mapped() -> dict[str, Any]:
    from langgraph import graph

    class SubgraphState(TypedDict):
        bar: str
        baz: str

    class ParentState(TypedDict):
        foo: str

    sub = graph.StateGraph(SubgraphState)
    sub.add_node("subgraph_node_1", lambda s: {"baz": "baz"})
    sub.add_node("subgraph_node_2", lambda s: {"bar": s["bar"] + s["baz"]})
    sub.add_edge(graph.START, "subgraph_node_1")
    sub.add_edge("subgraph_node_1", "subgraph_node_2")
    compiled = sub.compile()

    def node_2(state: ParentState) -> dict[str, Any]:
        response = compiled.invoke({"bar": state["foo"]})
        return {"foo": response["bar"]}

    parent = graph.StateGraph(ParentState)
    parent.add_node("node_1", lambda s: {"foo": "hi! " + s["foo"]})
    parent.add_node("node_2", node_2)
    parent.add_edge(graph.START, "node_1")
    parent.add_edge("node_1", "node_2")
    return dict(parent.compile().invoke({"foo": "foo"}))


@pytest.mark.parametrize("subjects", [["cats", "dogs", "owls"], []])
@pytest.mark.parametrize("name", ["subgraph_send", "subgraph_map"])
def test_each_item_sent_or_mapped_runs_the_subgraph_as_in_langgraph(
    name: str, subjects: list[str]
) -> None:
    result = run(name, {"subjects": subjects})
    assert result.status == "completed", result.error
    assert result.state == langgraph_jokes(subjects)


def langgraph_jokes(subjects: list[str]) -> dict[str, Any]:
    from langgraph import graph, types

    class JokeState(TypedDict, total=False):
        subject: str
        joke: str
        jokes: Annotated[list[str], operator.add]

    class OverallState(TypedDict, total=False):
        subjects: list[str]
        jokes: Annotated[list[str], operator.add]

    sub = graph.StateGraph(JokeState)
    sub.add_node("draft", lambda s: {"joke": f"Joke about {s['subject']}"})
    sub.add_node("collect", lambda s: {"jokes": [s["joke"] + "!"]})
    sub.add_edge(graph.START, "draft")
    sub.add_edge("draft", "collect")
    parent = graph.StateGraph(OverallState)
    parent.add_node("generate_joke", sub.compile())
    parent.add_conditional_edges(
        graph.START,
        lambda s: [types.Send("generate_joke", {"subject": x}) for x in s["subjects"]],
        ["generate_joke"],
    )
    parent.add_edge("generate_joke", graph.END)
    return dict(parent.compile().invoke({"subjects": subjects, "jokes": []}))


def test_the_parent_log_names_each_child_run_and_the_child_names_its_parent() -> None:
    # Given the map port over three subjects, on one store
    store = MemoryRunStore()
    named = {"joke subgraph": graph_of(example("subgraph_joke"))}
    runner = InProcessRunner(TOOLS, store=store, subgraphs=named)
    result = runner.run(graph_of(example("subgraph_map")), {"subjects": ["a", "b", "c"]})
    # Then each item's log entry names its child run, whose header links back to that task
    children = [(e["task"], e["child_run_id"]) for e in result.log]
    assert [task for task, _ in children] == ["generate_joke[0]", "generate_joke[1]",
                                              "generate_joke[2]"]  # fmt: skip
    for i, (task, child_id) in enumerate(children):
        assert child_id == child_run_id(result.run_id, 0, task)
        child = store.get_run(child_id)
        assert child.status == "completed"
        assert child.parent is not None
        link = ParentLink.from_dict(child.parent)
        assert (link.run_id, link.seq, link.node, link.index) == (result.run_id, 0,
                                                                  "generate_joke", i)  # fmt: skip


def test_a_failed_child_fails_its_parents_task_with_the_childs_reason() -> None:
    child = graph_of({"name": "breaks", "entry": "x", "nodes": {"x": {"tool": "explode"}},
                      "edges": {"x": "END"}})  # fmt: skip
    parent = graph_of({"name": "p", "entry": "a", "nodes": {"a": {"graph": "breaks"}},
                       "edges": {"a": "END"}})  # fmt: skip
    result = InProcessRunner(TOOLS, subgraphs={"breaks": child}).run(parent, {})
    assert result.status == "failed"
    assert "subgraph run rs_" in str(result.error)
    assert "the child's tool broke" in str(result.error)


# -- the graph syntax --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CHILDREN))
def test_the_canonical_form_round_trips_a_subgraph_node(name: str) -> None:
    graph = graph_of(example(name))
    assert graph_of(graph.to_dict()) == graph


@pytest.mark.parametrize(
    ("node", "where", "says"),
    [
        ({"graph": ""}, "nodes.a.graph", "must name a graph"),
        ({"graph": "g", "tool": "emit"}, "nodes.a.tool", "a node that runs a graph has no tool"),
        ({"graph": "g", "input": ["foo"]}, "nodes.a.input", "must be an object of state keys"),
        ({"graph": "g", "output": {"x": 3}}, "nodes.a.output", "must be an object of state"),
        ({"graph": "g", "settings": {}}, "nodes.a.settings", "has no settings"),
    ],
)
def test_a_subgraph_node_is_validated_with_locations(
    node: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(GraphValidationError) as caught:
        graph_of({"entry": "a", "nodes": {"a": node}, "edges": {"a": "END"}})
    assert any(p.location == where and says in p.message for p in caught.value.problems)


def test_a_graph_containing_itself_is_refused_in_process() -> None:
    # Given two graphs that name each other
    one = graph_of({"name": "one", "entry": "a", "nodes": {"a": {"graph": "two"}},
                    "edges": {"a": "END"}})  # fmt: skip
    two = graph_of({"name": "two", "entry": "b", "nodes": {"b": {"graph": "one"}},
                    "edges": {"b": "END"}})  # fmt: skip
    # When one runs, Then it is refused before anything starts
    with pytest.raises(GraphValidationError, match="contains itself"):
        InProcessRunner(TOOLS, subgraphs={"one": one, "two": two}).run(one, {})


# -- the durable protocol ---------------------------------------------------------------------
def durable(**config: Any) -> tuple[RunService, MemoryRunStore, MemoryQueue, Clock]:
    """The run service over the memory adapters, a lease of 60 s (``config``: more of the
    engine's settings)."""
    world = World(TOOLS, clock=Clock(1_000.0), lease_s=60.0, **config)
    return world.service, world.store, world.queue, world.clock


def create(service: RunService, name: str, owner: str | None = "alice") -> str:
    for child in CHILDREN.get(name, []):
        service.find_or_create_graph(example(child), owner=owner)
    return service.find_or_create_graph(example(name), owner=owner)[0].graph_id


def deliver(service: RunService, queue: MemoryQueue, rng: random.Random, twice: float) -> None:
    n = 0
    while queue.hops:
        hops = list(queue.hops)
        queue.hops.clear()
        rng.shuffle(hops)
        for hop in hops + [h for h in hops if rng.random() < twice]:
            n += 1
            service.process_hop(hop, f"m{n}")


DURABLE = {
    "subgraph_shared": {"foo": "foo"},
    "subgraph_mapped": {"foo": "foo"},
    "subgraph_send": {"subjects": ["cats", "dogs", "owls"]},
    "subgraph_map": {"subjects": ["cats", "dogs", "owls", "emus"]},
}


@pytest.mark.parametrize("name", sorted(DURABLE))
@pytest.mark.parametrize("seed", range(3))
def test_a_durable_run_of_each_port_ends_as_in_process(name: str, seed: int) -> None:
    # Given the run service over the memory adapters, the child graphs stored first
    service, store, queue, _ = durable()
    run_id = service.start_run(create(service, name), DURABLE[name], owner="alice")[0].run_id
    # When its hops (the children's too) are delivered shuffled, some twice
    deliver(service, queue, random.Random(seed), 0.3)
    # Then it ends as in process, each child ran under the parent's owner
    expected = run(name, DURABLE[name])
    final = store.get_run(run_id)
    assert (final.status, final.state, final.steps) == ("completed", expected.state,
                                                        expected.steps)  # fmt: skip
    children = [r for r in store.list_runs(limit=100).items if r.parent is not None]
    assert children and all(c.owner == "alice" and c.status == "completed" for c in children)


def test_a_childs_completion_told_twice_commits_the_parents_task_once() -> None:
    # Given a parent whose child completed and told it
    service, store, queue, _ = durable()
    run_id = service.start_run(create(service, "subgraph_shared"), {"foo": "foo"},
                               owner="alice")[0].run_id  # fmt: skip
    deliver(service, queue, random.Random(0), 0.0)
    done = store.get_run(run_id)
    child = store.get_run(child_run_id(run_id, 1, "node_2"))
    # When the child's completion is delivered again
    again = service.protocol.subgraphs.tell_parent(child)
    deliver(service, queue, random.Random(0), 0.0)
    # Then nothing more is committed: the parent ended once, as it was
    assert again in ("recovered", "duplicate", "stale")
    assert store.get_run(run_id) == done
    assert store.get_step(run_id, 1) is not None
    assert store.get_step(run_id, 1).child_run_id == child.run_id  # type: ignore[union-attr]


def test_a_parent_whose_child_ended_untold_is_finished_by_the_sweeper() -> None:
    # Given a child whose last close committed, and whose worker died before telling the
    # parent (the hook that tells it does nothing, as if the process stopped there)
    service, store, queue, clock = durable()
    subgraphs = service.protocol.subgraphs
    told, subgraphs.ended = subgraphs.ended, lambda run_id: None  # type: ignore[method-assign]
    run_id = service.start_run(create(service, "subgraph_map"), {"subjects": ["a", "b"]},
                               owner="alice")[0].run_id  # fmt: skip
    deliver(service, queue, random.Random(1), 0.0)
    subgraphs.ended = told  # type: ignore[method-assign]
    assert store.get_run(run_id).status == "running"
    # When the sweeper runs once the lease has passed
    clock.now += 61
    service.sweep()
    deliver(service, queue, random.Random(1), 0.0)
    # Then the parent is told, and ends as in process
    final = store.get_run(run_id)
    expected = run("subgraph_map", {"subjects": ["a", "b"]})
    assert (final.status, final.state) == ("completed", expected.state)


def test_the_sweeper_leaves_a_parent_waiting_on_a_live_child_alone() -> None:
    # Given a parent whose child has hops still queued (it is alive)
    service, store, queue, clock = durable()
    run_id = service.start_run(create(service, "subgraph_shared"), {"foo": "foo"},
                               owner="alice")[0].run_id  # fmt: skip
    hop = queue.hops.popleft()
    service.process_hop(hop, "m1")  # node_1
    hop = queue.hops.popleft()
    assert service.process_hop(hop, "m2") == "waiting"  # node_2 starts its child
    child_id = child_run_id(run_id, 1, "node_2")
    assert [h.run_id for h in queue.hops] == [child_id]
    # When the sweeper runs after the lease (before the child's hop is delivered)
    clock.now += 61
    sent = service.sweep()
    # Then it re-sends the child's hop only; the waiting parent costs nothing
    assert run_id not in sent
    assert all(h.run_id == child_id for h in queue.hops)
    deliver(service, queue, random.Random(0), 0.0)
    assert store.get_run(run_id).state == {"foo": "hi! foobar"}


def test_cancelling_a_parent_cancels_its_running_child() -> None:
    service, store, queue, _ = durable()
    run_id = service.start_run(create(service, "subgraph_send"), {"subjects": ["x", "y"]},
                               owner="alice")[0].run_id  # fmt: skip
    service.process_hop(queue.hops.popleft(), "m1")  # plan: sends the two items
    for n, hop in enumerate(list(queue.hops)):
        queue.hops.remove(hop)
        assert service.process_hop(hop, f"p{n}") == "waiting"
    children = [child_run_id(run_id, 1, f"generate_joke[{i}]") for i in range(2)]
    assert all(store.get_run(c).status == "running" for c in children)
    # When the parent is cancelled mid-child
    service.cancel_run(run_id)
    deliver(service, queue, random.Random(0), 0.0)
    # Then both children are cancelled, and the parent stays cancelled
    assert [store.get_run(c).status for c in children] == ["cancelled", "cancelled"]
    assert store.get_run(run_id).status == "cancelled"


def test_a_cancelled_child_fails_its_parents_task() -> None:
    service, store, queue, _ = durable()
    run_id = service.start_run(create(service, "subgraph_shared"), {"foo": "foo"},
                               owner="alice")[0].run_id  # fmt: skip
    service.process_hop(queue.hops.popleft(), "m1")
    service.process_hop(queue.hops.popleft(), "m2")
    service.cancel_run(child_run_id(run_id, 1, "node_2"))
    deliver(service, queue, random.Random(0), 0.0)
    final = store.get_run(run_id)
    assert final.status == "failed"
    assert "cancelled" in str(final.error)


def test_an_orphaned_child_is_cancelled_by_its_own_sweep() -> None:
    # Given a parent cancelled by a request that died before reaching its child
    service, store, queue, clock = durable()
    run_id = service.start_run(create(service, "subgraph_shared"), {"foo": "foo"},
                               owner="alice")[0].run_id  # fmt: skip
    service.process_hop(queue.hops.popleft(), "m1")
    service.process_hop(queue.hops.popleft(), "m2")
    from engine.commands import cancel_run

    cancel_run(store, run_id, clock(), "cancelled by request")
    queue.hops.clear()  # the child's hop was lost too
    # When the sweeper runs
    clock.now += 61
    service.sweep()
    # Then the child is cancelled, not left running
    assert store.get_run(child_run_id(run_id, 1, "node_2")).status == "cancelled"


# -- owners, references, nesting ------------------------------------------------------------------
def test_a_subgraph_reference_resolves_to_a_graph_id_its_owner_can_read() -> None:
    service, _, _, _ = durable()
    child_id = service.find_or_create_graph(example("subgraph_shared_child"), owner="alice")[0]
    record, graph, _ = service.find_or_create_graph(example("subgraph_shared"), owner="alice")
    # By name, stored as the id it named then
    assert record.definition["nodes"]["node_2"] == {"graph": child_id.graph_id}
    assert graph.nodes["node_2"].tool == f"graph:{child_id.graph_id}"
    # By id too
    doc = example("subgraph_shared")
    doc["nodes"]["node_2"]["graph"] = child_id.graph_id
    assert service.create_graph(doc, owner="alice")[0].definition == record.definition


@pytest.mark.parametrize("owner", ["bob", "alice"])
def test_a_reference_to_a_graph_its_owner_cannot_read_is_refused(owner: str) -> None:
    service, _, _, _ = durable()
    child = service.find_or_create_graph(example("subgraph_shared_child"), owner="bob")[0]
    doc = example("subgraph_shared")
    if owner == "alice":  # bob's graph, by its id, for alice
        doc["nodes"]["node_2"]["graph"] = child.graph_id
    else:  # a name nobody uses
        doc["nodes"]["node_2"]["graph"] = "no such graph"
    with pytest.raises(GraphValidationError) as caught:
        service.create_graph(doc, owner="alice" if owner == "alice" else "bob")
    assert caught.value.transport.status == 422
    (problem,) = caught.value.problems
    assert problem.location == "nodes.node_2.graph"
    assert "that you can read" in problem.message


def test_a_graph_naming_itself_is_refused() -> None:
    service, _, _, _ = durable()
    doc = {"name": "loop", "entry": "a", "nodes": {"a": {"graph": "loop"}}, "edges": {"a": "END"}}
    service.create_graph({**doc, "nodes": {"a": {"tool": "emit"}}}, owner="alice")
    with pytest.raises(GraphValidationError, match="cannot contain itself"):
        service.create_graph(doc, owner="alice")


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    service, _, _, _ = durable()
    service.create_graph({"name": "g0", "entry": "a", "nodes": {"a": {"tool": "emit"}},
                          "edges": {"a": "END"}}, owner="alice")  # fmt: skip
    for depth in range(1, MAX_SUBGRAPH_DEPTH):
        service.create_graph({"name": f"g{depth}", "entry": "a",
                              "nodes": {"a": {"graph": f"g{depth - 1}"}}, "edges": {"a": "END"}},
                             owner="alice")  # fmt: skip
    with pytest.raises(GraphValidationError, match=f"at most {MAX_SUBGRAPH_DEPTH}"):
        service.create_graph({"name": "deep", "entry": "a",
                              "nodes": {"a": {"graph": f"g{MAX_SUBGRAPH_DEPTH - 1}"}},
                              "edges": {"a": "END"}}, owner="alice")  # fmt: skip


def test_a_map_item_without_mappings_starts_its_child_from_the_item_alone() -> None:
    # Given the map port without its input and output mappings, after a map of its own
    doc = example("subgraph_map")
    node = doc["nodes"]["generate_joke"]
    del node["input"], node["output"]
    doc["nodes"]["tag"] = {"tool": "fill", "settings": {"key": "tags", "template": "#$s"},
                           "map": {"over": "subjects", "as": "s"}}  # fmt: skip
    doc["entry"], doc["edges"] = "tag", {"tag": "generate_joke", "generate_joke": "END"}
    doc["state"]["tags"] = {"reducer": "append"}
    named = {"joke subgraph": graph_of(example("subgraph_joke"))}
    # When two maps run in a row, the second's items each a child run
    result = InProcessRunner(TOOLS, subgraphs=named).run(graph_of(doc), {"subjects": ["a", "b"]})
    # Then each child gave back its own joke only (the parent's keys stay the parent's), as
    # LangGraph's Send of each subject to the compiled subgraph does
    assert result.status == "completed", result.error
    assert result.state == {**langgraph_jokes(["a", "b"]), "tags": ["#a", "#b"]}


def test_the_builder_adds_a_subgraph_node_as_langgraph_adds_a_compiled_graph() -> None:
    from engine.builder import END, START, StateGraph

    # Given the child written in Python, and a parent that adds it as a node
    child = StateGraph("different-state subgraph")
    child.add_node("subgraph_node_1", "emit", settings={"key": "baz", "value": "baz"})
    child.add_node("subgraph_node_2", "fill", settings={"key": "bar", "template": "$bar$baz"})
    child.add_edge(START, "subgraph_node_1")
    child.add_edge("subgraph_node_1", "subgraph_node_2")
    child.add_edge("subgraph_node_2", END)
    parent = StateGraph("a subgraph with its own state keys, mapped in and out")
    parent.add_node("node_1", "fill", settings={"key": "foo", "template": "hi! $foo"})
    parent.add_node("node_2", child, input={"foo": "bar"}, output={"bar": "foo"})
    parent.add_edge(START, "node_1")
    parent.add_edge("node_1", "node_2")
    parent.add_edge("node_2", END)
    # Then it writes the port's JSON, and a compiled child, or a reference, does the same
    assert parent.compile() == graph_of(example("subgraph_mapped"))
    assert child.compile() == graph_of(example("subgraph_mapped_child"))
    again = StateGraph("a subgraph with its own state keys, mapped in and out")
    again.add_node("node_1", "fill", settings={"key": "foo", "template": "hi! $foo"})
    again.add_node("node_2", graph="different-state subgraph", input={"foo": "bar"},
                   output={"bar": "foo"})  # fmt: skip
    again.add_edge(START, "node_1")
    again.add_edge("node_1", "node_2")
    again.add_edge("node_2", END)
    assert again.to_dict() == parent.to_dict()


def test_a_dead_letter_for_a_task_waiting_on_its_child_changes_nothing() -> None:
    # Given a parent whose task started its child, long ago (past the lease)
    service, store, queue, clock = durable()
    run_id = service.start_run(create(service, "subgraph_shared"), {"foo": "foo"},
                               owner="alice")[0].run_id  # fmt: skip
    service.process_hop(queue.hops.popleft(), "m1")
    parent_hop = queue.hops.popleft()
    assert service.process_hop(parent_hop, "m2") == "waiting"
    clock.now += 600
    # When a dead letter for that task comes (forged, or a very late copy)
    ended = service.fail_hop(parent_hop, "gave up")
    # Then the run is not failed: its task is waiting, not dead, and ends when its child does
    assert not ended
    assert store.get_run(run_id).status == "running"
    deliver(service, queue, random.Random(0), 0.0)
    assert store.get_run(run_id).state == {"foo": "hi! foobar"}


def test_the_command_line_runs_a_subgraph_port_locally_with_its_child_file() -> None:
    import os
    import subprocess
    import sys

    toolkits = ["--toolkit", "engine.toolkits.basics", "--toolkit", "examples.langgraph.toolkit"]
    hopgraph = str(Path(sys.executable).parent / "hopgraph")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run_cli(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [hopgraph, "run", "--local", "--json", str(EXAMPLES / "subgraph_shared.json"),
                   "--set", "foo=foo", *toolkits, *extra]  # fmt: skip
        return subprocess.run(command, cwd=EXAMPLES.parents[1], env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    # Given the child's file, the port ends as LangGraph's does
    done = run_cli("--subgraph", str(EXAMPLES / "subgraph_shared_child.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["state"] == langgraph_shared()
    # Without it, the run is refused, naming the graph it lacks
    missing = run_cli()
    assert missing.returncode == 2
    assert "graph 'shared-state subgraph' not found" in missing.stderr


# -- the owner's runs_in_flight quota ---------------------------------------------------------
def run_under_quota(limit: int) -> tuple[MemoryRunStore, RunRecord]:
    """Alice's run of a parent that starts one child, with her ``runs_in_flight`` quota at
    ``limit``, delivered to its end (some hops twice): the store and the parent's end."""
    service, store, queue, _ = durable(owner_runs_in_flight=limit)
    run_id = service.start_run(create(service, "subgraph_shared"), {"foo": "foo"},
                               owner="alice")[0].run_id  # fmt: skip
    deliver(service, queue, random.Random(0), 0.3)
    return store, store.get_run(run_id)


def test_a_child_counts_against_its_owners_runs_in_flight() -> None:
    # Given alice's quota of two runs in flight, When her parent and its child run (two runs)
    _, final = run_under_quota(2)
    # Then it ends as in process
    assert (final.status, final.state) == (
        "completed",
        run("subgraph_shared", {"foo": "foo"}).state,
    )


def test_a_child_the_quota_refuses_fails_its_parents_task_and_is_never_created() -> None:
    # Given alice's quota of one run in flight, which her parent run takes, When its subgraph
    # node would start a child
    store, final = run_under_quota(1)
    # Then the parent's task fails, naming the quota and the setting that raises it
    assert final.status == "failed"
    assert str(final.error).startswith("task 'node_2': subgraph ")
    assert "could not start: quota runs_in_flight exceeded: at most 1" in str(final.error)
    assert "OwnerRunsInFlight" in str(final.error)
    # And no child run exists: nothing ran past the quota
    assert [r.run_id for r in store.list_runs(limit=10).items] == [final.run_id]


def test_a_created_child_is_not_refused_again_and_another_owners_runs_do_not_count() -> None:
    # Given alice's quota of two, her parent's child created, and bob with runs of his own
    service, store, queue, _ = durable(owner_runs_in_flight=2)
    graph_id = create(service, "subgraph_shared")
    run_id = service.start_run(graph_id, {"foo": "foo"}, owner="alice")[0].run_id
    service.process_hop(queue.hops.popleft(), "m1")  # node_1
    hop = queue.hops.popleft()
    assert service.process_hop(hop, "m2") == "waiting"  # node_2's child: alice's second run
    bob = create(service, "subgraph_shared", owner="bob")
    service.start_run(bob, {"foo": "bar"}, owner="bob")
    # When the hop that created alice's child is delivered again (her quota is full now)
    service.process_hop(hop, "m3")
    # Then it does not fail the parent: the child is the one it created
    deliver(service, queue, random.Random(0), 0.0)
    assert store.get_run(run_id).status == "completed"
    assert [r.status for r in store.list_runs(owner="bob", limit=10).items] == ["completed"] * 2
