"""The tools, routers and reducers of the LangGraph ports in this folder.

Each is the LangGraph how-to's node, path function or reducer, written as a hopgraph tool
(``(state, ctx) -> updates``), router (``state -> where``) or reducer. Load it beside the
basics: ``hopgraph dev --toolkit engine.toolkits.basics --toolkit examples.langgraph.toolkit``
(the port's JSON files name these functions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from engine.tools import Command, Interrupt, Send, ToolContext, Toolkit

toolkit = Toolkit("langgraph-ports")


# -- routers (add_conditional_edges with a path function) ----------------------------------------
@toolkit.router
def route_bc_or_cd(state: Mapping[str, Any]) -> list[str]:
    """LangGraph's branching how-to: two of three nodes, by ``state.which``."""
    return ["c", "d"] if state["which"] == "cd" else ["b", "c"]


@toolkit.router
def route_listed(state: Mapping[str, Any]) -> list[str]:
    """The nodes listed in ``state.route``: a fan-out decided by the run's input."""
    return list(state["route"])


@toolkit.router
def assign_workers(state: Mapping[str, Any]) -> list[Send]:
    """LangGraph's orchestrator-worker: one ``Send`` per planned section, each carrying its
    section alone."""
    return [Send("write_section", {"section": s}) for s in state["sections"]]


@toolkit.router
def jokes_per_subject(state: Mapping[str, Any]) -> list[Send]:
    """LangGraph's map-reduce with a compiled subgraph as the node sent to: one ``Send`` per
    subject, each running the joke subgraph as a child run on its subject alone."""
    return [Send("generate_joke", {"subject": s}) for s in state["subjects"]]


@toolkit.router
def interleave(state: Mapping[str, Any]) -> list[str | Send]:
    """A node, and items sent to two others, interleaved: the node's update merges first,
    then the items' in the order sent."""
    return ["z", *(Send(node, {"word": word}) for node, word in state["sends"])]


# -- tools -------------------------------------------------------------------------------------
@toolkit.tool(writes=["sections"])
def plan_sections(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The orchestrator: the report's sections, from ``state.topic``."""
    return {"sections": [f"{state['topic']}: {part}" for part in ("intro", "body", "outlook")]}


@toolkit.tool(writes=["completed_sections"])
def write_section(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """A worker: sees the payload it was sent (``section``), and says what else it saw."""
    seen = ", ".join(sorted(state))
    return {"completed_sections": [f"{state['section']} (saw {seen})"]}


@toolkit.tool(writes=["final_report"])
def synthesize(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The synthesizer: the sections, joined."""
    return {"final_report": "\n---\n".join(state["completed_sections"])}


@toolkit.tool(writes=["words"])
def say_word(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Appends the word it was sent, marked with its node."""
    return {"words": [f"{ctx.node}:{state['word']}"]}


@toolkit.tool(writes=["foo"])
def pick_next(state: Mapping[str, Any], ctx: ToolContext) -> Command:
    """LangGraph's Command how-to: update ``foo`` and go to ``node_b`` or ``node_c`` in one
    return (``state.pick`` stands in for the how-to's random choice)."""
    value = state["pick"]
    return Command(update={"foo": value}, goto="node_b" if value == "a" else "node_c")


@toolkit.tool(writes=["foo"])
def add_letter(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Appends ``settings.letter`` to ``foo``."""
    return {"foo": state["foo"] + str(ctx.settings["letter"])}


@toolkit.tool(writes=["votes"])
def cast_votes(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Writes ``settings.votes`` (a count per choice) to ``votes``."""
    return {"votes": dict(ctx.settings["votes"])}


@toolkit.tool(writes=["approved"])
def ask_approval(state: Mapping[str, Any], ctx: ToolContext) -> Interrupt:
    """LangGraph's ``human_approval`` node, which calls ``interrupt()`` with the output to
    review: the run pauses with the question; the answer (a boolean) is written to
    ``approved`` and the node's branch picks the path.

    On purpose unlike LangGraph: there, ``Command(resume=...)`` runs the whole node again
    (everything before ``interrupt()`` happens twice, side effects included) and
    ``interrupt()`` returns the answer the second time. Here the tool runs once: it returns
    its question, and the answer is committed in its place, without calling it again."""
    return ctx.interrupt(
        f"Do you approve the following output? {state['llm_output']}",
        key="approved",
        schema={"type": "boolean"},
    )


class WeatherInput(TypedDict):
    city: Literal["nyc", "sf"]


@toolkit.tool
def get_weather(args: WeatherInput, ctx: ToolContext) -> dict[str, Any]:
    """Use this to get weather information."""
    # LangGraph's prebuilt ReAct agent how-to's tool, as a model calls it (its input typed)
    if args["city"] == "nyc":
        return {"text": "It might be cloudy in nyc"}
    return {"text": "It's always sunny in sf"}


# -- reducers ----------------------------------------------------------------------------------
@toolkit.reducer(empty=dict)
def tally(current: Any, update: Any) -> dict[str, int]:
    """Counts per key, summed: ``{"yes": 1} + {"yes": 1, "no": 2}`` gives
    ``{"yes": 2, "no": 2}``."""
    merged = dict(current or {})
    for key, count in update.items():
        merged[key] = merged.get(key, 0) + count
    return merged
