"""Supersteps in process: fan-out, map, join and reducers, with LangGraph's semantics.

The ported LangGraph examples under ``examples/langgraph/`` run here on the in-process
runner and, side by side, on LangGraph itself (the same nodes written as LangGraph nodes):
both must end in the same state.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from engine.errors import GraphValidationError
from engine.memory import MemoryRunStore
from engine.mermaid import to_mermaid
from engine.reducers import REDUCERS, ReducerError
from engine.runner import InProcessRunner
from engine.superstep import Task, close_superstep, merge_updates, plan_of, plan_tasks
from engine.toolkits.basics import toolkit as basics
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "langgraph"


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return doc


def run(doc: dict[str, Any], given: dict[str, Any], tools: Toolkit = basics) -> Any:
    return InProcessRunner(tools).run(build_graph(doc, tools.names()), given)


# -- reducers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "current", "update", "merged"),
    [
        ("replace", [1], [2], [2]),
        ("append", None, "a", ["a"]),
        ("append", ["a"], ["b", "c"], ["a", "b", "c"]),
        ("extend", ["a"], "b", ["a", "b"]),
        ("add", 2, 3, 5),
        ("add", [1], [2], [1, 2]),
        ("add", None, "x", "x"),
        ("merge", {"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ("merge", None, {"b": 2}, {"b": 2}),
        ("min", 3, 2, 2),
        ("max", 3, 2, 3),
        ("max", None, 2, 2),
        (
            "messages",
            [{"id": "1", "text": "hi"}, {"id": "2", "text": "yo"}],
            [{"id": "2", "text": "hey"}, {"id": "3", "text": "new"}],
            [{"id": "1", "text": "hi"}, {"id": "2", "text": "hey"}, {"id": "3", "text": "new"}],
        ),
    ],
)
def test_each_reducer_merges_as_documented(
    name: str, current: Any, update: Any, merged: Any
) -> None:
    before = json.dumps(current)
    assert REDUCERS[name](current, update) == merged
    assert json.dumps(current) == before  # the shared state is never mutated


@pytest.mark.parametrize(
    ("name", "current", "update", "says"),
    [
        ("add", 1, "x", "cannot add str to int"),
        ("add", True, 1, "booleans"),
        ("merge", {"a": 1}, [1], "must be an object"),
        ("append", "text", "x", "not a list"),
        ("max", 1, "x", "cannot compare int and str"),
    ],
)
def test_a_reducer_refuses_what_it_cannot_merge(
    name: str, current: Any, update: Any, says: str
) -> None:
    with pytest.raises(ReducerError, match=says):
        REDUCERS[name](current, update)


def test_a_chain_merges_through_its_reducers_too() -> None:
    # Given a loop whose node returns only its addition to a list
    doc = {
        "entry": "emit",
        "state": {"seen": {"reducer": "append"}, "n": {"reducer": "add"}},
        "nodes": {"emit": {"tool": "emit", "settings": {"key": "seen", "value": "x"}},
                  "count": {"tool": "emit", "settings": {"key": "n", "value": 1}}},
        "edges": {"emit": "count"},
        "branches": {"count": {"cases": [{"when": "n >= 3", "to": "END"}], "default": "emit"}},
    }  # fmt: skip
    # When it runs, Then the list grows instead of being overwritten
    result = run(doc, {"n": 0})
    assert (result.status, result.state) == ("completed", {"n": 3, "seen": ["x", "x", "x"]})


# -- the LangGraph examples ---------------------------------------------------------------------
def test_fan_out_with_a_reducer_ends_as_in_langgraph() -> None:
    result = run(example("fanout_reducer"), {"aggregate": []})
    assert result.status == "completed"
    assert (
        result.state == langgraph_fan_out() == {"aggregate": ["I'm A", "I'm B", "I'm C", "I'm D"]}
    )
    # b and c ran in one superstep, and d once after both
    assert [(e["seq"], e["task"]) for e in result.log] == [(0, "a"), (1, "b"), (1, "c"), (2, "d")]


def test_branches_of_unequal_length_join_as_in_langgraph() -> None:
    result = run(example("join_unequal"), {"aggregate": []})
    assert result.status == "completed"
    assert (
        result.state
        == langgraph_join()
        == {"aggregate": ["I'm A", "I'm B", "I'm C", "I'm B2", "I'm D"]}
    )
    assert [(e["seq"], e["task"]) for e in result.log][-1] == (3, "d")


def test_map_reduce_ends_as_langgraphs_send() -> None:
    subjects = ["cats", "dogs", "lions", "owls"]
    result = run(example("map_reduce"), {"subjects": subjects})
    assert result.status == "completed"
    assert result.state == langgraph_map_reduce(subjects)
    assert result.state["jokes"] == [f"Joke about {s}" for s in subjects]
    assert [e["task"] for e in result.log] == [f"generate_joke[{i}]" for i in range(4)]


class Aggregate(TypedDict):
    aggregate: Annotated[list[str], operator.add]


def _say(text: str) -> Any:
    return lambda state: {"aggregate": [text]}


def langgraph_fan_out() -> dict[str, Any]:
    from langgraph import graph

    builder = graph.StateGraph(Aggregate)
    for name in "abcd":
        builder.add_node(name, _say(f"I'm {name.upper()}"))
    builder.add_edge(graph.START, "a")
    for source, target in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", graph.END)):
        builder.add_edge(source, target)
    return dict(builder.compile().invoke({"aggregate": []}))


def langgraph_join() -> dict[str, Any]:
    from langgraph import graph

    builder = graph.StateGraph(Aggregate)
    for name, text in (("a", "A"), ("b", "B"), ("b_2", "B2"), ("c", "C"), ("d", "D")):
        builder.add_node(name, _say(f"I'm {text}"))
    builder.add_edge(graph.START, "a")
    for source, target in (("a", "b"), ("a", "c"), ("b", "b_2"), ("d", graph.END)):
        builder.add_edge(source, target)
    builder.add_edge(["b_2", "c"], "d")
    return dict(builder.compile().invoke({"aggregate": []}))


class Jokes(TypedDict):
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]


def langgraph_map_reduce(subjects: list[str], given_jokes: bool = True) -> dict[str, Any]:
    from langgraph import graph, types

    builder = graph.StateGraph(Jokes)
    builder.add_node("generate_joke", lambda s: {"jokes": [f"Joke about {s['subject']}"]})
    builder.add_conditional_edges(
        graph.START,
        lambda state: [types.Send("generate_joke", {"subject": s}) for s in state["subjects"]],
    )
    builder.add_edge("generate_joke", graph.END)
    given: dict[str, Any] = {"subjects": subjects, **({"jokes": []} if given_jokes else {})}
    return dict(builder.compile().invoke(given))


class Notes(TypedDict):
    docs: list[str]
    notes: Annotated[list[str], operator.add]


def langgraph_parallel_research(docs: list[str]) -> list[str]:
    """``examples/parallel_research.json`` in LangGraph: the map is a ``Send`` per document."""
    from langgraph import graph, types

    builder = graph.StateGraph(Notes)
    for name in ("plan", "search", "read", "write"):
        builder.add_node(name, _note(name))
    builder.add_node("grade", lambda s: {"notes": [f"graded {s['doc']}"]})
    builder.add_edge(graph.START, "plan")
    builder.add_conditional_edges(
        "plan",
        lambda s: ["search", *(types.Send("grade", {"doc": d}) for d in s["docs"])],
        ["search", "grade"],
    )
    builder.add_edge("search", "read")
    builder.add_edge(["read", "grade"], "write")
    builder.add_edge("write", graph.END)
    notes: list[str] = builder.compile().invoke({"docs": docs})["notes"]
    return notes


def _note(text: str) -> Any:
    return lambda state: {"notes": [text]}


# -- concurrency ---------------------------------------------------------------------------------
concurrent = Toolkit("concurrency-tests")
active = {"now": 0, "most": 0}
gate_lock = threading.Lock()


@concurrent.tool
def rendezvous(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Returns only once ``settings.parties`` tasks are inside it at the same time."""
    barrier = barriers.setdefault(ctx.node, threading.Barrier(int(ctx.settings["parties"])))
    barrier.wait(timeout=10)
    return {"met": [ctx.node]}


@concurrent.tool
def counted(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Tracks how many of its tasks run at once; the first ``cap`` meet at a barrier."""
    with gate_lock:
        active["now"] += 1
        active["most"] = max(active["most"], active["now"])
    try:
        if state["item"] < int(ctx.settings["cap"]):
            barriers.setdefault("cap", threading.Barrier(int(ctx.settings["cap"]))).wait(10)
        return {"done": [state["item"]]}
    finally:
        with gate_lock:
            active["now"] -= 1


barriers: dict[str, threading.Barrier] = {}


def test_the_tasks_of_a_superstep_run_at_the_same_time() -> None:
    # Given three branches that can only finish when all three are running together
    barriers.clear()
    doc = {
        "entry": "start",
        "state": {"met": {"reducer": "append"}},
        "nodes": {"start": {"tool": "rendezvous", "settings": {"parties": 1}},
                  **{n: {"tool": "rendezvous", "settings": {"parties": 3}} for n in "xyz"}},
        "edges": {"start": ["x", "y", "z"], "x": "END", "y": "END", "z": "END"},
    }  # fmt: skip
    # When the run goes, Then it completes: run one by one, the barrier would time out
    barriers.update({n: threading.Barrier(3) for n in ("x", "y", "z")})
    shared = threading.Barrier(3)
    barriers.update({"x": shared, "y": shared, "z": shared})
    result = run(doc, {}, concurrent)
    assert (result.status, result.state["met"]) == ("completed", ["start", "x", "y", "z"])


def test_a_map_runs_at_most_max_concurrency_tasks_at_once() -> None:
    barriers.clear()
    active.update(now=0, most=0)
    doc = {
        "entry": "work",
        "state": {"done": {"reducer": "append"}},
        "nodes": {"work": {"tool": "counted", "settings": {"cap": 4},
                           "map": {"over": "items", "as": "item", "max_concurrency": 4}}},
        "edges": {"work": "END"},
    }  # fmt: skip
    result = run(doc, {"items": list(range(30))}, concurrent)
    assert result.status == "completed"
    assert result.state["done"] == list(range(30))  # item order, whatever the finishing order
    assert active["most"] == 4  # the first four met at the barrier, and never more ran


# -- semantics in detail -------------------------------------------------------------------------
def graph_of(doc: dict[str, Any]) -> Any:
    return build_graph(doc, basics.names())


def test_two_tasks_writing_an_unreduced_key_fail_the_run_naming_both() -> None:
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "emit"}, "b": {"tool": "emit", "settings": {"key": "x"}},
                  "c": {"tool": "emit", "settings": {"key": "x"}}},
        "edges": {"a": ["b", "c"], "b": "END", "c": "END"},
    }  # fmt: skip
    result = run(doc, {})
    assert result.status == "failed"
    assert "'b' and 'c' both wrote 'x'" in result.error
    assert '"state": {"x": {"reducer": "append"}}' in result.error


def test_declared_writes_catch_the_conflict_at_creation() -> None:
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "emit"}, "b": {"tool": "fill"}, "c": {"tool": "fill"}},
        "edges": {"a": ["b", "c"], "b": "END", "c": "END"},
    }
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, basics.names(), writes={"fill": ["out"], "emit": []})
    assert [p.location for p in caught.value.problems] == ["nodes.a"]
    assert "runs 'b' and 'c' together; both write 'out'" in caught.value.problems[0].message
    reduced = {**doc, "state": {"out": {"reducer": "append"}}}
    build_graph(reduced, basics.names(), writes={"fill": ["out"], "emit": []})


def test_a_map_over_something_else_than_a_list_fails_clearly() -> None:
    result = run(example("map_reduce"), {"subjects": {"a": 1}})
    assert result.status == "failed"
    assert (
        result.error
        == "map node 'generate_joke' runs over 'subjects', which holds dict, not a list"
    )


def test_a_map_over_an_empty_list_ends_that_branch() -> None:
    # Given a map over nothing, and no jokes in the input
    result = run(example("map_reduce"), {"subjects": []})
    # Then the reduced key starts empty, as LangGraph's channel does, and the run's one
    # superstep completes it
    assert (result.status, result.steps) == ("completed", 1)
    assert [(e["seq"], e["run_status"], e["updates"]) for e in result.log] == [(0, "completed", {})]
    assert (
        result.state == langgraph_map_reduce([], given_jokes=False) == {"subjects": [], "jokes": []}
    )


def test_the_step_limit_counts_supersteps() -> None:
    doc = {
        "entry": "a",
        "max_steps": 3,
        "state": {"n": {"reducer": "add"}},
        "nodes": {"a": {"tool": "emit", "settings": {"key": "n", "value": 1}},
                  "b": {"tool": "emit", "settings": {"key": "n", "value": 1}}},
        "edges": {"a": ["a", "b"], "b": "END"},
    }  # fmt: skip
    result = run(doc, {})
    assert result.status == "failed" and result.steps == 3
    assert result.error.startswith("step limit reached: 3 supersteps ran")


def test_a_join_waits_across_supersteps_and_resets() -> None:
    graph = graph_of(example("join_unequal"))
    state: dict[str, Any] = {"aggregate": []}
    c_done = close_superstep(graph, state, {}, [_ok("c", [])], 1, 100)
    assert c_done.next_nodes == () and c_done.joins == {"d": frozenset({"c"})}
    # nothing else runs here, and d would never run: the run fails rather than end without it
    assert c_done.end is not None and c_done.end.status == "failed"
    assert "join 'd' still waits (it has seen 'c')" in str(c_done.end.error)
    both = close_superstep(graph, state, c_done.joins, [_ok("b_2", [])], 2, 100)
    assert both.next_nodes == ("d",) and both.joins == {}


def _ok(node: str, targets: list[str]) -> Any:
    from engine.superstep import TaskResult

    return TaskResult(Task(node), "emit", {}, tuple(targets), 0.0)


def test_tasks_merge_in_node_then_item_order() -> None:
    graph = graph_of(example("fanout_reducer"))
    tasks = plan_tasks(graph, ["c", "b"], {})
    assert tasks == [Task("b"), Task("c")]
    merged = merge_updates(
        graph, {}, [(Task("b"), {"aggregate": "B"}), (Task("c"), {"aggregate": "C"})]
    )
    assert merged == {"aggregate": ["B", "C"]}


def test_a_plan_holds_exactly_its_tasks_in_merge_order() -> None:
    # Given a map over three items beside a plain node, and a map over nothing
    graph = graph_of(json.loads((EXAMPLES.parent / "parallel_research.json").read_text()))
    plan = plan_of(graph, ["search", "grade"], {"docs": ["x", "y", "z"]})
    # Then it lists, counts and holds those four tasks, and nothing else
    want = [Task("search"), Task("grade", 0), Task("grade", 1), Task("grade", 2)]
    assert list(plan) == plan_tasks(graph, ["grade", "search"], {"docs": ["x", "y", "z"]}) == want
    assert len(plan) == 4 and all(task in plan for task in want)
    strangers = [Task("grade", 3), Task("grade", -1), Task("grade"), Task("search", 0),
                 Task("read"), "grade[0]"]  # fmt: skip
    assert not any(task in plan for task in strangers)
    assert list(plan_of(graph, ["grade"], {"docs": []})) == []


def test_a_parallel_run_is_recorded_in_the_store_like_a_durable_one() -> None:
    # Given the in-process runner recording into a store of the caller's
    store = MemoryRunStore()
    result = InProcessRunner(basics, store=store).run(
        graph_of(example("fanout_reducer")), {}, run_id="r_fan"
    )
    # Then the run, its closed supersteps and each task of a superstep of several are there,
    # as the worker would have written them
    assert store.get_run("r_fan").state == result.state and result.status == "completed"
    steps = store.list_steps("r_fan").items
    assert [s.seq for s in steps] == list(range(result.steps))
    assert [t.key for t in store.list_tasks("r_fan", 1)] == ["b", "c"]


# -- validation and pictures ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "location", "says"),
    [
        ({"edges": {"a": ["b", "END"], "b": "END"}}, "edges.a[1]", "END in a fan-out"),
        ({"edges": {"a": [], "b": "END"}}, "edges.a", "an empty list"),
        ({"edges": {"a": ["b", "b"], "b": "END"}}, "edges.a", "named twice"),
        ({"joins": {"b": ["a"]}}, "joins.b", "two or more"),
        ({"joins": {"END": ["a", "b"]}}, "joins.END", "END cannot wait"),
        ({"joins": {"b": ["a", "zz"]}}, "joins.b", "unknown node 'zz'"),
        ({"state": {"x": {"reducer": "apend"}}}, "state.x.reducer", "did you mean 'append'"),
        ({"nodes": {"a": {"tool": "emit", "map": {"over": "xs"}}, "b": {"tool": "emit"}}},
         "nodes.a.map.as", "must name a state key"),
        ({"nodes": {"a": {"tool": "emit", "map": {"over": "xs", "as": "x",
                                                    "max_concurrency": 0}},
                    "b": {"tool": "emit"}}}, "nodes.a.map.max_concurrency", "from 1 to"),
    ],
)  # fmt: skip
def test_parallel_parts_are_validated_with_locations(
    change: dict[str, Any], location: str, says: str
) -> None:
    doc = {"entry": "a", "nodes": {"a": {"tool": "emit"}, "b": {"tool": "emit"}},
           "edges": {"a": "b", "b": "END"}, **change}  # fmt: skip
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, basics.names())
    assert any(p.location == location and says in p.message for p in caught.value.problems), (
        caught.value.problems
    )


def test_a_join_that_waits_for_what_only_it_leads_to_is_refused() -> None:
    doc = {
        "entry": "a",
        "nodes": {n: {"tool": "emit"} for n in ("a", "b", "d")},
        "edges": {"a": "END", "d": "b", "b": "END"},
        "joins": {"d": ["a", "b"]},
    }
    with pytest.raises(GraphValidationError, match="'d' can never run: 'b' is only reached"):
        build_graph(doc, basics.names())


def test_the_canonical_form_round_trips_parallel_graphs() -> None:
    for name in ("fanout_reducer", "join_unequal", "map_reduce"):
        graph = graph_of(example(name))
        assert graph_of(graph.to_dict()) == graph
        assert not graph.is_chain


def test_mermaid_shows_fan_outs_maps_and_joins() -> None:
    text = to_mermaid(graph_of(example("join_unequal")))
    assert "    a --> b\n    a --> c\n" in text
    assert "    b_2 -.->|join| d\n    c -.->|join| d\n" in text
    mapped = to_mermaid(graph_of(example("map_reduce")))
    assert (
        'generate_joke[["generate_joke<br/><i>fill</i><br/>for each subject in subjects"]]'
        in mapped
    )


def test_dialect3_fans_out_and_joins_as_langgraph_edges_do() -> None:
    doc = {
        "entry_point": "a",
        "nodes": [{"id": n, "tool": "emit"} for n in ("a", "b", "b_2", "c", "d")],
        "edges": [
            {"from": "a", "to": "b"}, {"from": "a", "to": "c"}, {"from": "b", "to": "b_2"},
            {"from": ["b_2", "c"], "to": "d"}, {"from": "d", "to": "END"},
        ],
    }  # fmt: skip
    graph = graph_of(doc)
    assert graph.edges["a"] == ("b", "c") and graph.joins == {"d": ("b_2", "c")}


def test_the_readme_example_runs_as_the_readme_says() -> None:
    doc = json.loads((EXAMPLES.parent / "parallel_research.json").read_text())
    result = run(doc, {"docs": ["a", "b"]})
    assert result.status == "completed"
    # edge-triggered tasks merge first, then the items of the map: LangGraph's order
    want = ["plan", "search", "graded a", "graded b", "read", "write"]
    assert result.state["notes"] == langgraph_parallel_research(["a", "b"]) == want
    assert [(e["seq"], e["task"]) for e in result.log] == [
        (0, "plan"), (1, "search"), (1, "grade[0]"), (1, "grade[1]"), (2, "read"), (3, "write")
    ]  # fmt: skip
    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    assert to_mermaid(graph_of(doc)) in readme.replace("```mermaid\n", "")


def test_the_readme_shows_the_map_example_and_its_picture() -> None:
    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    doc = example("map_reduce")
    assert to_mermaid(graph_of(doc)) in readme.replace("```mermaid\n", "")
    assert json.dumps(doc["nodes"]["generate_joke"]["map"]) in readme.replace("\n", "")


# -- retries (LangGraph's RetryPolicy) -----------------------------------------------------------
def test_a_flaky_call_succeeds_on_its_third_attempt_as_in_langgraph() -> None:
    result = run(example("retry_flaky"), {})
    assert result.status == "completed"
    assert result.state == langgraph_flaky(fail_times=2) == {"attempts": 3, "trail": ["visit"]}


def test_a_flaky_call_gives_up_after_three_attempts_as_in_langgraph() -> None:
    doc = example("retry_flaky")
    doc["nodes"]["call"]["settings"] = {"succeed_on": 0}
    result = run(doc, {})
    with pytest.raises(ConnectionError) as raised:
        langgraph_flaky(fail_times=9)
    assert str(raised.value) == "attempt 3 of call failed"  # LangGraph gave up at the third
    assert result.status == "failed"
    assert result.error is not None and result.error.endswith(
        "ConnectionError: attempt 3 of call failed"
    )


def test_an_error_route_goes_on_with_the_error() -> None:
    result = run(example("error_route"), {})
    assert result.status == "completed"
    assert result.state["reply"] == "sorry, try later"
    assert result.state["error"]["attempts"] == 2
    assert [e["node"] for e in result.log] == ["call", "fallback", "visit"]


def langgraph_flaky(fail_times: int) -> dict[str, Any]:
    """LangGraph's retry how-to: a node calling a flaky service, RetryPolicy(max_attempts=3)."""
    from langgraph import graph, types

    class State(TypedDict, total=False):
        attempts: int
        trail: list[str]

    calls = 0

    def call(state: State) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls <= fail_times:
            raise ConnectionError(f"attempt {calls} of call failed")
        return {"attempts": calls}

    builder = graph.StateGraph(State)
    policy = types.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False)
    builder.add_node("call", call, retry_policy=policy)
    builder.add_node("visit", lambda state: {"trail": [*state.get("trail", []), "visit"]})
    builder.add_edge(graph.START, "call")
    builder.add_edge("call", "visit")
    builder.add_edge("visit", graph.END)
    return dict(builder.compile().invoke({}))
