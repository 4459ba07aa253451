"""LangGraph's human-in-the-loop how-tos, ported (``examples/langgraph/approval.json``,
``approval_tool.json``, ``breakpoint.json``): a person approves or rejects an output before
the run goes on, and a static breakpoint stops the run before a node. Each runs on LangGraph
itself (a ``MemorySaver`` checkpointer and a thread id: invoke until the interrupt, then
``Command(resume=True)`` / ``Command(resume=False)``, or ``invoke(None)`` past a breakpoint)
and on hopgraph's run protocol in process (memory store: the run pauses, ``resume_run``
answers it); both must wait at the same node with the same state and end in the same state.

One difference is on purpose: on resume LangGraph runs the asking node again from its start
(what it did before ``interrupt()`` happens twice); hopgraph commits the answer in the
node's place and does not call its code again. The tool-asking port counts its calls to
show it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict

import pytest

from engine.errors import ConflictError, InvalidInputError
from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import RunService
from engine.toolkits.basics import toolkit as basics
from engine.tools import Interrupt, ToolContext, Toolkit
from examples.langgraph.toolkit import ask_approval
from examples.langgraph.toolkit import toolkit as ports

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "langgraph"
OUTPUT = "This is the generated output."
QUESTION = "Do you approve the following output?"

asked: list[str] = []
"""Every call of the asking tool (``ask_approval``), by task."""

TOOLS = Toolkit("approval-port")
TOOLS.include(basics)
TOOLS.include(ports)


@TOOLS.tool(name="ask_approval", writes=["approved"])
def counted_ask_approval(state: Mapping[str, Any], ctx: ToolContext) -> Interrupt:
    """The port's ``ask_approval``, counting its calls."""
    asked.append(ctx.task)
    return ask_approval(state, ctx)


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    asked.clear()


class Hopgraph:
    """A port on the run protocol in process (memory store, hops delivered in order)."""

    def __init__(self, name: str) -> None:
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.service = RunService(self.store, self.queue, TOOLS)
        doc = json.loads((EXAMPLES / f"{name}.json").read_text())
        self.graph_id = self.service.create_graph(doc)[0].graph_id

    def drain(self) -> None:
        self.queue.drain(lambda hop: self.service.process_hop(hop, "d"))

    def start(self) -> str:
        run, _ = self.service.start_run(self.graph_id, {})
        self.drain()
        return run.run_id

    def resume(self, run_id: str, value: Any = None) -> None:
        self.service.resume_run(run_id, value)
        self.drain()

    def run(self, run_id: str) -> Any:
        return self.store.get_run(run_id)

    def pending(self, run_id: str) -> list[dict[str, Any]]:
        return self.service.pending_questions(self.run(run_id))

    def nodes(self, run_id: str) -> list[str]:
        return [s.node for s in self.store.list_steps(run_id).items]


# -- approve or reject ---------------------------------------------------------------------------
class Approval(TypedDict, total=False):
    llm_output: str
    approved: bool
    decision: str


def langgraph_approval(answer: bool) -> dict[str, Any]:
    """The how-to on LangGraph: ``human_approval`` calls ``interrupt()``; the answer picks
    the path (``Command(goto=...)``) and is kept under ``approved``."""
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    runs: list[str] = []

    def human_approval(state: Approval) -> Command[Literal["approved_path", "rejected_path"]]:
        runs.append("human_approval")
        approved = interrupt({"question": QUESTION, "llm_output": state["llm_output"]})
        return Command(goto="approved_path" if approved else "rejected_path",
                       update={"approved": approved})  # fmt: skip

    builder = StateGraph(Approval)
    builder.add_node("generate_llm_output", lambda state: {"llm_output": OUTPUT})
    builder.add_node("human_approval", human_approval)
    builder.add_node("approved_path", lambda state: {"decision": "approved"})
    builder.add_node("rejected_path", lambda state: {"decision": "rejected"})
    builder.add_edge(START, "generate_llm_output")
    builder.add_edge("generate_llm_output", "human_approval")
    builder.add_edge("approved_path", END)
    builder.add_edge("rejected_path", END)
    graph = builder.compile(checkpointer=MemorySaver())
    config: Any = {"configurable": {"thread_id": "approval"}}
    first = graph.invoke({}, config)
    (question,) = first["__interrupt__"]
    waiting = graph.get_state(config)
    final = graph.invoke(Command(resume=answer), config)
    return {
        "question": question.value, "next": list(waiting.next),
        "waiting": dict(waiting.values), "final": dict(final), "runs": runs,
    }  # fmt: skip


@pytest.mark.parametrize("answer", [True, False], ids=["approve", "reject"])
@pytest.mark.parametrize("port", ["approval", "approval_tool"])
def test_approve_and_reject_end_as_in_langgraph(port: str, answer: bool) -> None:
    reference = langgraph_approval(answer)
    hop = Hopgraph(port)

    # Given the run, it waits at human_approval, with the output to review, as LangGraph does
    run_id = hop.start()
    assert hop.run(run_id).status == "paused"
    (question,) = hop.pending(run_id)
    assert [question["task"]] == reference["next"] == ["human_approval"]
    assert question["prompt"].startswith(reference["question"]["question"])
    assert (question["key"], question["schema"]) == ("approved", {"type": "boolean"})
    assert hop.run(run_id).state == reference["waiting"] == {"llm_output": OUTPUT}

    # When it is answered as Command(resume=answer) answers LangGraph's
    hop.resume(run_id, answer)

    # Then it takes the same path to the same end
    run = hop.run(run_id)
    assert run.status == "completed"
    assert run.state == reference["final"]
    assert run.state["decision"] == ("approved" if answer else "rejected")
    path = "approved_path" if answer else "rejected_path"
    assert hop.nodes(run_id) == ["generate_llm_output", "human_approval", path]


def test_the_asking_node_runs_once_where_langgraph_runs_it_again_on_resume() -> None:
    reference = langgraph_approval(True)
    hop = Hopgraph("approval_tool")
    run_id = hop.start()
    hop.resume(run_id, True)
    assert hop.run(run_id).state == reference["final"]
    assert reference["runs"] == ["human_approval", "human_approval"]  # LangGraph: twice
    assert asked == ["human_approval"]  # hopgraph: once, its answer committed in its place


def test_an_answer_is_taken_once_and_checked_against_its_schema() -> None:
    hop = Hopgraph("approval")
    run_id = hop.start()
    with pytest.raises(InvalidInputError, match="not of type 'boolean'"):
        hop.service.resume_run(run_id, "approve")  # the how-to's string answer: refused here
    hop.service.resume_run(run_id, False)
    assert hop.service.resume_run(run_id, False).status == "running"  # the same, again
    with pytest.raises(ConflictError):
        hop.service.resume_run(run_id, True)  # another answer to the answered question
    hop.drain()
    assert hop.run(run_id).state["decision"] == "rejected"


# -- a static breakpoint (interrupt_before) ------------------------------------------------------
class Trail(TypedDict, total=False):
    trail: list[str]


def langgraph_breakpoint() -> dict[str, Any]:
    """The breakpoint how-to on LangGraph: ``compile(interrupt_before=["step_3"])``, then
    ``invoke(None)`` goes on."""
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.graph import END, START, StateGraph

    def visit(node: str) -> Any:
        return lambda state: {"trail": [*state.get("trail", []), node]}

    builder = StateGraph(Trail)
    for node in ("step_1", "step_2", "step_3"):
        builder.add_node(node, visit(node))
    builder.add_edge(START, "step_1")
    builder.add_edge("step_1", "step_2")
    builder.add_edge("step_2", "step_3")
    builder.add_edge("step_3", END)
    graph = builder.compile(checkpointer=MemorySaver(), interrupt_before=["step_3"])
    config: Any = {"configurable": {"thread_id": "breakpoint"}}
    graph.invoke({}, config)
    waiting = graph.get_state(config)
    final = graph.invoke(None, config)
    return {"next": list(waiting.next), "waiting": dict(waiting.values), "final": dict(final)}


def test_a_breakpoint_stops_before_its_node_and_goes_on_as_in_langgraph() -> None:
    reference = langgraph_breakpoint()
    hop = Hopgraph("breakpoint")
    run_id = hop.start()
    (question,) = hop.pending(run_id)
    assert (question["task"], question["kind"]) == ("step_3", "before")
    assert [question["task"]] == reference["next"]
    assert hop.run(run_id).state == reference["waiting"] == {"trail": ["step_1", "step_2"]}
    hop.resume(run_id)  # LangGraph's invoke(None, config): no value
    run = hop.run(run_id)
    assert (run.status, run.state) == ("completed", reference["final"])
    assert reference["final"] == {"trail": ["step_1", "step_2", "step_3"]}


def test_the_builder_takes_breakpoints_at_compile_as_langgraph_does() -> None:
    from engine.builder import END, START, StateGraph
    from engine.validation import build_graph

    builder = StateGraph("breakpoint")
    for node in ("step_1", "step_2", "step_3"):
        builder.add_node(node, "record_visit")
    builder.add_edge(START, "step_1")
    builder.add_edge("step_1", "step_2")
    builder.add_edge("step_2", "step_3")
    builder.add_edge("step_3", END)
    compiled = builder.compile(interrupt_before=["step_3"])
    port = json.loads((EXAMPLES / "breakpoint.json").read_text())
    assert compiled == build_graph({**port, "name": "breakpoint"})
    assert StateGraph.from_dict(port).to_dict()["interrupt_before"] == ["step_3"]


def test_the_same_answer_sent_again_after_the_run_went_on_is_answered_the_same() -> None:
    hop = Hopgraph("approval")
    run_id = hop.start()
    hop.resume(run_id, True)  # answered, and the run goes on to its end (two supersteps on)
    assert hop.run(run_id).status == "completed"
    assert hop.service.resume_run(run_id, True).status == "completed"  # a retry of the POST
