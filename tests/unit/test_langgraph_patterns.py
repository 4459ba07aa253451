"""LangGraph's routers, ``Send`` payloads, ``Command``, custom reducers and deferred nodes,
ported to ``examples/langgraph/`` and run in process beside LangGraph itself: both must end
in the same state (as ``tests/unit/test_supersteps.py`` does for fan-out, joins and maps).
"""

from __future__ import annotations

import json
import operator
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import pytest

from engine.errors import GraphValidationError
from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.runner import InProcessRunner
from engine.service import RunService
from engine.superstep import Plan, Task, TaskResult, close_superstep, plan_of, run_task
from engine.toolkits.basics import toolkit as basics
from engine.tools import Command, Send, ToolContext, Toolkit
from engine.validation import build_graph
from examples.langgraph.toolkit import toolkit as ports
from tests.models import langchain_scripted

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "langgraph"
TOOLS = Toolkit("ports-and-basics")
TOOLS.include(basics)
TOOLS.include(ports)


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return doc


def graph_of(doc: dict[str, Any], tools: Toolkit = TOOLS) -> Any:
    return build_graph(doc, tools.names(), toolkit=tools)


def run(name: str, given: dict[str, Any]) -> Any:
    return InProcessRunner(TOOLS).run(graph_of(example(name)), given)


def tasks(result: Any) -> list[tuple[int, str]]:
    return [(e["seq"], e["task"]) for e in result.log]


class Aggregate(TypedDict, total=False):
    aggregate: Annotated[list[str], operator.add]
    which: str
    route: list[str]


def _say(text: str) -> Any:
    return lambda state: {"aggregate": [text]}


# -- routers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["bc", "cd"])
def test_a_router_returning_several_nodes_branches_as_in_langgraph(which: str) -> None:
    result = run("router_branching", {"which": which})
    assert result.status == "completed"
    assert result.state == langgraph_branching(which)
    ran = "bc" if which == "bc" else "cd"
    assert result.state["aggregate"] == ["I'm A", *(f"I'm {n.upper()}" for n in ran), "I'm E"]
    assert tasks(result) == [(0, "a"), (1, ran[0]), (1, ran[1]), (2, "e")]


def langgraph_branching(which: str) -> dict[str, Any]:
    from langgraph import graph

    builder = graph.StateGraph(Aggregate)
    for name in "abcde":
        builder.add_node(name, _say(f"I'm {name.upper()}"))
    builder.add_edge(graph.START, "a")
    route = ports.get_router("route_bc_or_cd")
    builder.add_conditional_edges("a", route, ["b", "c", "d"])
    for name in "bcd":
        builder.add_edge(name, "e")
    builder.add_edge("e", graph.END)
    return dict(builder.compile().invoke({"aggregate": [], "which": which}))


class Report(TypedDict, total=False):
    topic: str
    sections: list[str]
    completed_sections: Annotated[list[str], operator.add]
    final_report: str


class Section(TypedDict):
    section: str


def test_items_sent_by_a_router_carry_their_own_payload_as_in_langgraph() -> None:
    # Given the orchestrator-worker how-to: a router sends one item per planned section
    result = run("orchestrator_worker", {"topic": "LLM scaling laws"})
    # Then each worker saw its section alone, not the state, and the synthesizer ran once
    assert result.status == "completed"
    assert result.state == langgraph_orchestrator_worker("LLM scaling laws")
    assert result.state["completed_sections"] == [
        f"LLM scaling laws: {part} (saw section)" for part in ("intro", "body", "outlook")
    ]
    assert tasks(result) == [(0, "orchestrator"), (1, "write_section[0]"),
                             (1, "write_section[1]"), (1, "write_section[2]"),
                             (2, "synthesizer")]  # fmt: skip


def langgraph_orchestrator_worker(topic: str) -> dict[str, Any]:
    from langgraph import graph

    ctx = ToolContext("langgraph", "write_section", 0)
    builder = graph.StateGraph(Report)
    builder.add_node("orchestrator", lambda s: ports.get("plan_sections").fn(s, ctx))
    builder.add_node(
        "write_section", lambda s: ports.get("write_section").fn(s, ctx), input_schema=Section
    )
    builder.add_node("synthesizer", lambda s: ports.get("synthesize").fn(s, ctx))
    builder.add_edge(graph.START, "orchestrator")
    builder.add_conditional_edges(
        "orchestrator",
        lambda s: [lg_send(x.node, dict(x.payload)) for x in ports.get_router("assign_workers")(s)],
        ["write_section"],
    )
    builder.add_edge("write_section", "synthesizer")
    builder.add_edge("synthesizer", graph.END)
    return dict(builder.compile().invoke({"topic": topic}))


def lg_send(node: str, payload: dict[str, Any]) -> Any:
    """LangGraph's ``Send`` of the same item."""
    from langgraph import types

    return types.Send(node, payload)


class Words(TypedDict, total=False):
    words: Annotated[list[str], operator.add]
    sends: list[list[str]]


def test_plain_tasks_merge_first_then_items_in_the_order_sent_as_in_langgraph() -> None:
    sends = [["y", "one"], ["x", "two"], ["y", "three"]]
    result = run("send_order", {"sends": sends})
    assert result.status == "completed"
    assert result.state == langgraph_send_order(sends)
    assert result.state["words"] == ["start", "z", "y:one", "x:two", "y:three"]
    assert tasks(result) == [(0, "start"), (1, "z"), (1, "y[0]"), (1, "x[1]"), (1, "y[2]")]


def langgraph_send_order(sends: list[list[str]]) -> dict[str, Any]:
    from langgraph import graph

    builder = graph.StateGraph(Words)
    builder.add_node("start", lambda s: {"words": ["start"]})
    for name in "xy":
        builder.add_node(name, lambda s, n=name: {"words": [f"{n}:{s['word']}"]})
    builder.add_node("z", lambda s: {"words": ["z"]})
    builder.add_edge(graph.START, "start")

    def route(state: Any) -> list[Any]:
        chosen = ports.get_router("interleave")(state)
        return [c if isinstance(c, str) else lg_send(c.node, dict(c.payload)) for c in chosen]

    builder.add_conditional_edges("start", route, ["x", "y", "z"])
    for name in "xyz":
        builder.add_edge(name, graph.END)
    return dict(builder.compile().invoke({"sends": sends}))


def test_a_router_that_goes_where_it_may_not_fails_its_task_clearly() -> None:
    # Given a router that chooses a node outside its "to"
    tools = Toolkit("strays")
    tools.include(TOOLS)
    tools.router(lambda state: ["e"], name="route_bc_or_cd")
    bad = InProcessRunner(tools).run(graph_of(example("router_branching"), tools), {})
    # Then its task fails, saying so
    assert bad.status == "failed"
    assert "router 'route_bc_or_cd' chose 'e', which is not among where it may go" in bad.error
    # and so does one that sends what cannot be recorded
    tools.router(lambda state: [Send("b", {"seen": {1, 2}})], name="route_bc_or_cd")
    odd = InProcessRunner(tools).run(graph_of(example("router_branching"), tools), {})
    assert odd.status == "failed" and "a payload that is not JSON" in odd.error


# -- Command -------------------------------------------------------------------------------------
class Foo(TypedDict, total=False):
    foo: str
    pick: str


@pytest.mark.parametrize("pick", ["a", "b"])
def test_a_tool_returning_a_command_updates_and_goes_as_in_langgraph(pick: str) -> None:
    result = run("command_goto", {"pick": pick})
    assert result.status == "completed"
    assert result.state == langgraph_command(pick)
    assert result.state["foo"] == ("ab" if pick == "a" else "bc")
    assert tasks(result) == [(0, "node_a"), (1, "node_b" if pick == "a" else "node_c")]


def langgraph_command(pick: str) -> dict[str, Any]:
    from langgraph import graph, types

    def node_a(state: Foo) -> types.Command[Literal["node_b", "node_c"]]:
        value = state["pick"]
        return types.Command(update={"foo": value}, goto="node_b" if value == "a" else "node_c")

    builder = graph.StateGraph(Foo)
    builder.add_node("node_a", node_a)
    builder.add_node("node_b", lambda s: {"foo": s["foo"] + "b"})
    builder.add_node("node_c", lambda s: {"foo": s["foo"] + "c"})
    builder.add_edge(graph.START, "node_a")
    builder.add_edge("node_b", graph.END)
    builder.add_edge("node_c", graph.END)
    return dict(builder.compile().invoke({"pick": pick}))


def test_a_command_can_send_items_and_must_be_declared() -> None:
    tools = Toolkit("commands")
    tools.include(TOOLS)

    @tools.tool(name="fan")
    def fan(state: Any, ctx: ToolContext) -> Command:
        return Command(update={"aggregate": ["fan"]},
                       goto=[Send("echo", {"word": w}) for w in ("p", "q")])  # fmt: skip

    @tools.tool(name="echo")
    def echo(state: Any, ctx: ToolContext) -> dict[str, Any]:
        return {"aggregate": [f"echo {state['word']} ({', '.join(sorted(state))})"]}

    doc = {
        "entry": "fan",
        "state": {"aggregate": {"reducer": "append"}},
        "nodes": {"fan": {"tool": "fan", "goto": ["echo"]}, "echo": {"tool": "echo"}},
        "edges": {"echo": "END"},
    }
    result = InProcessRunner(tools).run(graph_of(doc, tools), {})
    assert (result.status, result.state["aggregate"]) == (
        "completed", ["fan", "echo p (word)", "echo q (word)"])  # fmt: skip
    # a Command's goto from a node that declares none fails the task, saying what to add
    undeclared = {**doc, "nodes": {"fan": {"tool": "fan"}}, "edges": {"fan": "END"}}
    failed = InProcessRunner(tools).run(graph_of(undeclared, tools), {})
    assert failed.status == "failed" and 'add "goto"' in failed.error


# -- custom reducers ----------------------------------------------------------------------------
def _tally(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    reduced: dict[str, int] = ports.reducers()["tally"].fn(left, right)
    return reduced


class Votes(TypedDict, total=False):
    votes: Annotated[dict[str, int], _tally]


def test_a_toolkits_reducer_merges_a_fan_out_as_in_langgraph() -> None:
    result = run("custom_reducer", {})
    assert result.status == "completed"
    assert result.state == langgraph_votes() == {"votes": {"yes": 2, "no": 3}}


def langgraph_votes() -> dict[str, Any]:
    from langgraph import graph

    builder = graph.StateGraph(Votes)
    for name, votes in (("a", {"yes": 1}), ("b", {"yes": 1, "no": 1}), ("c", {"no": 2})):
        builder.add_node(name, lambda s, v=votes: {"votes": v})
    builder.add_edge(graph.START, "a")
    for source, target in (("a", "b"), ("a", "c"), ("b", graph.END), ("c", graph.END)):
        builder.add_edge(source, target)
    return dict(builder.compile().invoke({}))


def test_a_reducer_name_is_checked_against_the_toolkit() -> None:
    doc = {**example("custom_reducer"), "state": {"votes": {"reducer": "taly"}}}
    with pytest.raises(GraphValidationError, match="did you mean 'tally'"):
        graph_of(doc)
    # a stored graph rebuilt without its toolkit fails the run when it merges, not silently
    trusted = build_graph(example("custom_reducer"))
    result = InProcessRunner(TOOLS).run(trusted, {})
    assert result.status == "failed"
    assert "reducer 'tally' is not registered" in result.error


# -- deferred nodes -----------------------------------------------------------------------------
@pytest.mark.parametrize("route", [["b", "c"], ["b"], ["c"]])
def test_a_deferred_node_runs_once_after_every_branch_taken_as_in_langgraph(
    route: list[str],
) -> None:
    result = run("deferred", {"route": route})
    assert result.status == "completed"
    assert result.state == langgraph_deferred(route)
    assert [task for _, task in tasks(result)][-1] == "d"
    assert result.state["aggregate"].count("I'm D") == 1


def langgraph_deferred(route: list[str]) -> dict[str, Any]:
    from langgraph import graph

    builder = graph.StateGraph(Aggregate)
    for name, text in (("a", "A"), ("b", "B"), ("b_2", "B2"), ("c", "C")):
        builder.add_node(name, _say(f"I'm {text}"))
    builder.add_node("d", _say("I'm D"), defer=True)
    builder.add_edge(graph.START, "a")
    builder.add_conditional_edges("a", ports.get_router("route_listed"), ["b", "c"])
    for source, target in (("b", "b_2"), ("b_2", "d"), ("c", "d"), ("d", graph.END)):
        builder.add_edge(source, target)
    return dict(builder.compile().invoke({"route": route}))


def test_a_join_skipped_by_a_routed_fan_out_fails_the_run_instead_of_ending_silently() -> None:
    # Given the deferred example with a join in place of the deferred node
    doc = example("deferred")
    doc["nodes"]["d"].pop("defer")
    doc["edges"] = {"b": "b_2", "d": "END"}
    doc["joins"] = {"d": ["b_2", "c"]}
    # When the router skips c
    result = InProcessRunner(TOOLS).run(graph_of(doc), {"route": ["b"]})
    # Then the run fails, naming the join and how to get what was meant
    assert result.status == "failed"
    assert "join 'd' still waits (it has seen 'b_2')" in result.error
    assert '"defer": true' in result.error
    # and with both branches taken, the join runs as before
    both = InProcessRunner(TOOLS).run(graph_of(doc), {"route": ["b", "c"]})
    assert both.status == "completed" and both.state["aggregate"][-1] == "I'm D"


def test_deferred_nodes_wait_in_the_close_until_nothing_else_runs() -> None:
    graph = graph_of(example("deferred"))
    ok = [TaskResult(Task("c"), "emit", {}, ("d",), 0.0), TaskResult(Task("b"), "emit", {},
                                                                      ("b_2",), 0.0)]  # fmt: skip
    first = close_superstep(graph, {}, {}, ok, 1, 100)
    assert (first.next_nodes, first.deferred, first.end) == (("b_2",), ("d",), None)
    then = close_superstep(graph, {}, {}, [TaskResult(Task("b_2"), "emit", {}, ("d",), 0.0)],
                           2, 100, None, first.deferred)  # fmt: skip
    assert (then.next_nodes, then.deferred, then.end) == (("d",), (), None)


# -- the plan of a superstep with items sent ------------------------------------------------------
def test_a_plan_with_items_sent_holds_each_once_and_its_payload() -> None:
    graph = graph_of(example("send_order"))
    sends = [Send("y", {"word": "one"}), Send("x", {"word": "two"}).to_dict()]
    plan = plan_of(graph, ["z"], {}, sends)
    assert list(plan) == [Task("z"), Task("y", 0), Task("x", 1)] and len(plan) == 3
    assert Task("x", 1) in plan and Task("x", 0) not in plan and Task("y", 1) not in plan
    assert plan.payload(Task("x", 1)) == {"word": "two"} and plan.payload(Task("z")) is None
    # a sent task run without its plan fails, rather than see the wrong input
    ctx = ToolContext("r", "x", 1)
    assert "was not sent" in str(run_task(graph, TOOLS, Task("x", 1), {}, ctx).error)
    done = run_task(graph, TOOLS, Task("x", 1), {"words": []}, ctx, plan)
    assert done.updates == {"words": ["x:two"]}
    assert Plan({}, ()) == plan_of(graph, [], {})


def test_an_item_sent_to_a_map_node_fails_the_close() -> None:
    graph = graph_of(example("map_reduce"), basics)
    sent = TaskResult(Task("generate_joke", 0), "fill", {}, (), 0.0, None,
                      (Send("generate_joke", {}),))  # fmt: skip
    closed = close_superstep(graph, {"subjects": ["a"]}, {}, [sent], 0, 10)
    assert closed.end is not None and "a map node" in str(closed.end.error)


# -- validation and the canonical form ------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "location", "says"),
    [
        ({"branches": {"a": {"router": "route_bc_or_cd"}}}, "branches.a.to", "list where"),
        ({"branches": {"a": {"router": "route_bc_or_ce", "to": ["b"]}}}, "branches.a.router",
         "did you mean 'route_bc_or_cd'"),
        ({"branches": {"a": {"router": "route_bc_or_cd", "to": ["zz"]}}}, "branches.a.to[0]",
         "unknown target 'zz'"),
        ({"nodes": {"a": {"tool": "emit", "defer": "yes"}, "b": {"tool": "emit"}}},
         "nodes.a.defer", "true or false"),
        ({"nodes": {"a": {"tool": "emit", "goto": ["zz"]}, "b": {"tool": "emit"}}},
         "nodes.a.goto[0]", "unknown target 'zz'"),
    ],
)  # fmt: skip
def test_routers_goto_and_defer_are_validated_with_locations(
    change: dict[str, Any], location: str, says: str
) -> None:
    doc = {"entry": "a", "nodes": {"a": {"tool": "emit"}, "b": {"tool": "emit"}},
           "edges": {"b": "END"}, "branches": {"a": {"router": "route_bc_or_cd", "to": ["b"]}},
           **change}  # fmt: skip
    with pytest.raises(GraphValidationError) as caught:
        graph_of(doc)
    assert any(p.location == location and says in p.message for p in caught.value.problems), (
        caught.value.problems
    )


def test_a_node_with_goto_needs_no_other_way_out_and_its_targets_are_reachable() -> None:
    graph = graph_of(example("command_goto"))
    assert graph.nodes["node_a"].goto == ("node_b", "node_c")
    assert set(graph.successors("node_a")) == {"node_b", "node_c"}


@pytest.mark.parametrize(
    "name",
    ["router_branching", "orchestrator_worker", "send_order", "command_goto", "custom_reducer",
     "deferred"],
)  # fmt: skip
def test_the_canonical_form_round_trips_the_new_patterns(name: str) -> None:
    graph = graph_of(example(name))
    assert graph_of(graph.to_dict()) == graph
    assert not graph.is_chain


# -- the durable protocol ------------------------------------------------------------------------
DURABLE: dict[str, list[dict[str, Any]]] = {
    "router_branching": [{"which": "bc"}, {"which": "cd"}],
    "orchestrator_worker": [{"topic": "tides"}],
    "send_order": [{"sends": [["y", "one"], ["x", "two"], ["y", "three"]]}, {"sends": []}],
    "command_goto": [{"pick": "a"}, {"pick": "b"}],
    "custom_reducer": [{}],
    "deferred": [{"route": ["b", "c"]}, {"route": ["b"]}, {"route": ["c"]}],
    "map_reduce": [{"subjects": []}, {"subjects": ["cats", "dogs"]}],
}


@pytest.mark.parametrize("name", sorted(DURABLE))
@pytest.mark.parametrize("seed", range(3))
def test_a_durable_run_of_each_port_ends_as_in_process(name: str, seed: int) -> None:
    # Given the run service over the in-memory adapters, with the ports' toolkit
    store, queue = MemoryRunStore(), MemoryQueue()
    service = RunService(store, queue, TOOLS, notifier=RecordingNotifier())
    graph_id = service.create_graph(example(name))[0].graph_id
    for given in DURABLE[name]:
        run_id = service.start_run(graph_id, given)[0].run_id
        # When its hops are delivered in a shuffled order, some twice
        rng = random.Random(seed)
        deliveries = 0
        while queue.hops:
            hops = list(queue.hops)
            queue.hops.clear()
            rng.shuffle(hops)
            for hop in hops + [h for h in hops if rng.random() < 0.3]:
                deliveries += 1
                service.process_hop(hop, f"m{deliveries}")
        # Then it ends as in process: a worker rebuilds each item sent from the run's records
        expected = run(name, given)
        final = store.get_run(run_id)
        assert (final.status, final.state, final.error) == (
            expected.status, expected.state, expected.error,
        ), given  # fmt: skip
        assert final.steps == expected.steps


def test_a_stored_graph_whose_router_is_gone_fails_the_task_that_needs_it() -> None:
    # Given a stored graph read back with a toolkit that no longer registers its router
    stored = build_graph(example("router_branching"), toolkit=basics)
    # When it runs, Then the task that routes fails, naming the router
    result = InProcessRunner(basics).run(stored, {"which": "bc"})
    assert result.status == "failed"
    assert "router 'route_bc_or_cd' is not registered" in result.error


def test_a_join_waiting_for_a_map_over_nothing_fails_alike_in_process_and_durably() -> None:
    # Given the README's example, whose join waits for a map, on an empty list of documents
    doc = json.loads((EXAMPLES.parent / "parallel_research.json").read_text())
    in_process = InProcessRunner(TOOLS).run(graph_of(doc), {"docs": []})
    store, queue = MemoryRunStore(), MemoryQueue()
    service = RunService(store, queue, TOOLS)
    run_id = service.start_run(service.create_graph(doc)[0].graph_id, {"docs": []})[0].run_id
    queue.drain(lambda hop: service.process_hop(hop, f"m{id(hop)}"))
    durable = store.get_run(run_id)
    # Then both fail, saying the join would never run, rather than end without it
    assert in_process.status == durable.status == "failed"
    assert in_process.error == durable.error
    assert "join 'write' still waits (it has seen 'read')" in str(durable.error)
    assert in_process.state == durable.state


def test_the_ports_run_with_the_command_line_from_the_repository() -> None:
    # Given the ports' toolkit, found from the current folder as `python -m` would find it
    toolkits = ["--toolkit", "engine.toolkits.basics", "--toolkit", "examples.langgraph.toolkit"]
    command = [str(Path(sys.executable).parent / "hopgraph"), "run", "--local", "--json",
               str(EXAMPLES / "command_goto.json"), "--set", "pick=b", *toolkits]  # fmt: skip
    # When the `hopgraph` script runs a port there
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, cwd=EXAMPLES.parents[1], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    # Then it ends as LangGraph does
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])  # progress lines, then the result
    assert result["state"] == langgraph_command("b")


# -- the prebuilt ReAct agent -------------------------------------------------------------------
def test_the_react_agent_makes_the_calls_and_messages_langgraphs_prebuilt_one_does() -> None:
    import warnings

    from langchain_core.tools import tool
    from langgraph.prebuilt import create_react_agent

    from engine.messages import normalize, text_of, tool_uses
    from engine.tools import load_toolkits

    doc = example("react_agent")
    spec = doc["nodes"]["agent"]["agent"]
    question = {"role": "user", "content": "what is the weather in sf, then in nyc"}
    # Given the port, its scripted model and its tool
    tools = load_toolkits(
        ["engine.toolkits.basics", "examples.langgraph.toolkit", "functions.models.toolkit"]
    )
    result = InProcessRunner(tools).run(graph_of(doc, tools), {"messages": [question]})
    assert result.status == "completed", result.error
    ours = []
    for m in map(normalize, result.state["messages"]):  # the input, as given: content a string
        for block in m["content"]:
            if "toolResult" in block:
                r = block["toolResult"]
                ours.append(("tool", r["toolUseId"], r["content"][0]["text"]))
        if not any("toolResult" in b for b in m["content"]):
            calls = [(c["toolUseId"], c["name"], c["input"]) for c in tool_uses(m)]
            ours.append((m["role"], text_of(m), calls))

    # And LangGraph's prebuilt agent on the same answers and the same tool
    @tool
    def get_weather(city: Literal["nyc", "sf"]) -> str:
        """Use this to get weather information."""
        return str(ports.get("get_weather").fn({"city": city}, None)["text"])  # type: ignore[arg-type]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent moved to langchain.agents in 1.0
        agent = create_react_agent(
            langchain_scripted(spec["responses"]), [get_weather], prompt=spec["system"]
        )
    final = agent.invoke({"messages": [("user", question["content"])]})
    theirs = []
    for m in final["messages"]:
        if m.type == "tool":
            theirs.append(("tool", m.tool_call_id, m.content))
        else:
            calls = [(c["id"], c["name"], c["args"]) for c in getattr(m, "tool_calls", [])]
            theirs.append(("user" if m.type == "human" else "assistant", m.content, calls))
    # Then both make the same tool calls and end with the same messages
    assert ours == theirs
    assert ours[-1] == ("assistant", "It's always sunny in sf, and it might be cloudy in nyc.", [])
