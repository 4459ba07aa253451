"""Model nodes and agents (engine/agents.py): the ``llm`` and ``agent`` node kinds in graph
validation, tool calling as steps (a send per tool call, each appending its result), the
research agent example in process, and LangGraph's prebuilt ReAct agent on the same script."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel

from engine.errors import GraphValidationError
from engine.mermaid import to_mermaid
from engine.messages import text_of, tool_uses
from engine.runner import InProcessRunner
from engine.superstep import Task, merge_updates, run_task
from engine.tools import ToolContext, Toolkit, load_toolkits
from engine.validation import build_graph
from tests.models import langchain_scripted

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "research_agent.json"
TOOLKITS = ["engine.toolkits.basics", "engine.toolkits.research", "functions.models.toolkit"]


@pytest.fixture(scope="module")
def tools() -> Toolkit:
    return load_toolkits(TOOLKITS)


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def build(doc: dict[str, Any], tools: Toolkit) -> Any:
    return build_graph(doc, tools.names(), toolkit=tools)


def problems(doc: dict[str, Any], tools: Toolkit) -> dict[str, str]:
    with pytest.raises(GraphValidationError) as failed:
        build(doc, tools)
    return {p.location: p.message for p in failed.value.problems}


# -- validation --------------------------------------------------------------------------------
def test_unknown_keys_of_a_model_node_are_refused_with_their_location(tools: Toolkit) -> None:
    doc = example()
    spec = doc["nodes"]["researcher"]["agent"]
    spec["temprature"] = 0
    spec["inference"]["max_token"] = 5
    doc["nodes"]["researcher"]["tool"] = "llm"
    found = problems(doc, tools)
    assert "nodes.researcher.agent.temprature" in found
    assert "did you mean 'max_tokens'" in found["nodes.researcher.agent.inference.max_token"]
    assert "nodes.researcher.tool" in found


def test_a_model_may_only_be_offered_registered_tools_with_a_schema(tools: Toolkit) -> None:
    doc = example()
    doc["nodes"]["researcher"]["agent"]["tools"] = ["search_doc", "emit"]
    doc["nodes"]["researcher"]["agent"]["provider"] = "gemini"
    found = problems(doc, tools)
    assert found["nodes.researcher.agent.tools[0]"] == "unknown tool 'search_doc'"
    assert "declares no input schema" in found["nodes.researcher.agent.tools[1]"]
    assert "bedrock, openai, scripted" in found["nodes.researcher.agent.provider"]


def test_an_agent_leaves_by_one_edge_and_a_schema_needs_an_output(tools: Toolkit) -> None:
    doc = example()
    doc["branches"] = {"researcher": {"cases": [{"when": "True", "to": "END"}]}}
    del doc["edges"]
    assert "leaves by one edge" in problems(doc, tools)["branches.researcher"]
    plain = {
        "entry": "ask",
        "nodes": {"ask": {"llm": {"schema": {"type": "object"}}}},
        "edges": {"ask": "END"},
    }
    assert "name the state key" in problems(plain, tools)["nodes.ask.llm.output"]


def test_an_agent_expands_into_a_model_node_a_tool_node_and_the_loop(tools: Toolkit) -> None:
    graph = build(example(), tools)
    assert set(graph.nodes) == {"researcher", "researcher_tools"}
    assert graph.nodes["researcher"].goto == ("researcher_tools", "END")
    assert graph.edges == {"researcher_tools": ("researcher",)}
    assert graph.reducers == {"messages": "messages"}
    picture = to_mermaid(graph)
    assert "researcher -.->|goto| researcher_tools" in picture
    assert "researcher_tools --> researcher" in picture
    assert "researcher -.->|goto| __end__" in picture
    # the canonical form builds the same graph (a stored graph is read back from it)
    assert build(graph.to_dict(), tools) == graph


# -- tool schemas ------------------------------------------------------------------------------
class Point(TypedDict):
    x: int
    label: str | None


class Query(BaseModel):
    text: str
    limit: int = 3


@dataclass
class Box:
    width: float
    tags: list[str]


def test_tools_declare_their_input_schema_from_hints_or_input(tools: Toolkit) -> None:
    kit = Toolkit("t")

    @kit.tool
    def plot(args: Point, ctx: ToolContext) -> dict[str, Any]:
        return {"ok": args["x"]}

    @kit.tool(input=Query)
    def find(args: Any, ctx: ToolContext) -> dict[str, Any]:
        return {"found": args["text"] * args["limit"]}

    @kit.tool(input=Box)
    def pack(args: Any, ctx: ToolContext) -> None:
        return None

    assert kit.get("plot").input_schema == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "label": {"type": "string"}},
        "required": ["x", "label"],
    }
    assert kit.get("find").input_schema == Query.model_json_schema()
    assert kit.get("pack").input_schema == {
        "type": "object",
        "properties": {
            "width": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["width", "tags"],
    }
    described = {t["name"]: t for t in tools.describe()}
    assert described["calculator"]["input_schema"]["required"] == ["expression"]
    assert "input_schema" not in described["emit"]


def test_a_pydantic_input_is_validated_and_a_bad_one_answered_to_the_model() -> None:
    from engine.agents import run_tool_call

    kit = Toolkit("t")

    @kit.tool(input=Query)
    def find(args: Any, ctx: ToolContext) -> dict[str, Any]:
        return {"found": args["text"] * args["limit"]}

    ctx = ToolContext("r", "a_tools", 1, settings={"messages": "m", "tools": ["find"]})
    good = run_tool_call(
        {"call": {"toolUseId": "c", "name": "find", "input": {"text": "ab"}}}, ctx, kit
    )
    result = good["m"][0]["content"][0]["toolResult"]
    assert result["content"] == [{"json": {"found": "ababab"}}]
    bad = run_tool_call(
        {"call": {"toolUseId": "c", "name": "find", "input": {"limit": 2}}}, ctx, kit
    )
    assert bad["m"][0]["content"][0]["toolResult"]["status"] == "error"
    unknown = run_tool_call({"call": {"toolUseId": "d", "name": "rm", "input": {}}}, ctx, kit)
    assert "unknown tool 'rm'" in json.dumps(unknown)


# -- running -----------------------------------------------------------------------------------
def test_the_research_agent_answers_in_several_tool_rounds(tools: Toolkit) -> None:
    result = InProcessRunner(tools).run(build(example(), tools), {})
    assert result.status == "completed", result.error
    assert result.state["answer"].startswith("A Lambda function runs for at most 15 minutes")
    messages = result.state["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "user", "user", "assistant", "user", "user", "assistant"]
    ids = [m["id"] for m in messages]
    assert len(set(ids)) == len(ids)
    results = [b["toolResult"] for m in messages for b in m["content"] if "toolResult" in b]
    assert [r["toolUseId"] for r in results] == [
        "call_lambda",
        "call_sqs",
        "call_minutes",
        "call_queue",
    ]
    assert [r["content"][0]["json"] for r in results[2:]] == [{"result": 15}, {"result": 90}]
    # model, 2 tool calls, model, 2 tool calls, model: five supersteps
    assert result.steps == 5
    usage = [m["metadata"] for m in messages if m["role"] == "assistant"]
    assert [u["stop_reason"] for u in usage] == ["tool_use", "tool_use", "end_turn"]
    assert all(u["input_tokens"] > 0 and u["output_tokens"] > 0 for u in usage)


def test_a_model_task_run_twice_appends_its_message_once(tools: Toolkit) -> None:
    graph = build(example(), tools)
    state = graph.start_state({})
    ctx = ToolContext("run1", "researcher", 0)
    first = run_task(graph, tools, Task("researcher"), state, ctx)
    again = run_task(graph, tools, Task("researcher"), state, ctx)
    assert first.updates == again.updates and [s.payload for s in first.sends] == [
        s.payload for s in again.sends
    ]
    once = merge_updates(graph, state, [(Task("researcher"), first.updates)])
    twice = merge_updates(graph, once, [(Task("researcher"), again.updates)])
    assert twice == once and len(once["messages"]) == 2


def test_a_structured_answer_goes_under_output(tools: Toolkit) -> None:
    doc = {
        "entry": "grade",
        "nodes": {
            "grade": {
                "llm": {
                    "schema": {"type": "object", "properties": {"score": {"type": "integer"}}},
                    "output": "grade",
                    "responses": [{"structured": {"score": 7}}],
                }
            }
        },
        "edges": {"grade": "END"},
    }
    result = InProcessRunner(tools).run(build(doc, tools), {"messages": ["grade this: x = 1"]})
    assert result.status == "completed", result.error
    assert result.state["grade"] == {"score": 7}
    asked, answered = result.state["messages"]  # the input, as given: a user's text
    assert asked == "grade this: x = 1" and answered["role"] == "assistant"


def test_a_model_error_fails_the_task_with_the_providers_message(tools: Toolkit) -> None:
    doc = {"entry": "ask", "nodes": {"ask": {"llm": {"responses": []}}}, "edges": {"ask": "END"}}
    result = InProcessRunner(tools).run(build(doc, tools), {"messages": ["hi"]})
    assert result.status == "failed"
    assert "ModelError" in str(result.error) and "no scripted answer for turn 0" in str(
        result.error
    )


def test_the_step_limit_bounds_the_rounds(tools: Toolkit) -> None:
    doc = example()
    doc["max_steps"] = 3
    result = InProcessRunner(tools).run(build(doc, tools), {})
    assert result.status == "failed" and "step limit reached" in str(result.error)


# -- LangGraph's prebuilt ReAct agent on the same script -----------------------------------------
def _langgraph_react(doc: dict[str, Any], tools: Toolkit) -> list[dict[str, Any]]:
    from langchain_core.tools import StructuredTool
    from langgraph.prebuilt import create_react_agent

    spec = doc["nodes"]["researcher"]["agent"]
    ctx = ToolContext("lg", "tools", 0, settings=spec["tool_settings"]["search_docs"])

    def lc_tool(name: str) -> StructuredTool:
        tool = tools.get(name)

        def call(**args: Any) -> str:
            return json.dumps(tool.fn(args, ctx))

        return StructuredTool.from_function(
            call, name=name, description=tool.description, args_schema=tool.input_schema
        )

    agent = create_react_agent(
        langchain_scripted(spec["responses"]),
        [lc_tool(n) for n in spec["tools"]],
        prompt=spec["system"],
    )
    final = agent.invoke({"messages": [("user", spec["prompt"])]})
    out = []
    for m in final["messages"]:
        if m.type == "tool":
            out.append({"result": m.tool_call_id, "content": json.loads(m.content)})
        else:
            calls = [(c["id"], c["name"], c["args"]) for c in getattr(m, "tool_calls", [])]
            out.append(
                {
                    "role": "user" if m.type == "human" else "assistant",
                    "text": m.content,
                    "calls": calls,
                }
            )
    return out


def _ours(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        results = [b["toolResult"] for b in m["content"] if "toolResult" in b]
        if results:
            out.extend(
                {"result": r["toolUseId"], "content": r["content"][0]["json"]} for r in results
            )
        else:
            calls = [(c["toolUseId"], c["name"], c["input"]) for c in tool_uses(m)]
            out.append({"role": m["role"], "text": text_of(m), "calls": calls})
    return out


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_langgraphs_react_agent_makes_the_same_calls_and_messages(tools: Toolkit) -> None:
    doc = example()
    ours = InProcessRunner(tools).run(build(copy.deepcopy(doc), tools), {})
    assert ours.status == "completed", ours.error
    assert _ours(ours.state["messages"]) == _langgraph_react(doc, tools)


# -- the command line --------------------------------------------------------------------------
def test_the_command_line_prints_the_research_agents_answer_offline() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HOPGRAPH_LLM")}
    env["COLUMNS"] = "400"  # the answer on one line
    command = [str(Path(sys.executable).parent / "hopgraph"), "run", str(EXAMPLE), "--local"]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run completed after 5 steps" in done.stdout
    assert (
        "answer (messages): A Lambda function runs for at most 15 minutes, so its SQS event "
        "source queue needs a visibility timeout of at least 90 minutes"
    ) in done.stdout
    refused = subprocess.run(
        [*command, "--llm", "claude"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "scripted, bedrock or openai=URL" in refused.stderr


def test_approving_tool_calls_adds_a_review_node_reached_once_answered(tools: Toolkit) -> None:
    doc = example()
    doc["nodes"]["researcher"]["agent"]["approve_tools"] = ["calculator"]
    graph = build(doc, tools)
    assert set(graph.nodes) == {"researcher", "researcher_tools", "researcher_review"}
    assert graph.nodes["researcher_review"].goto == ("researcher_tools", "researcher")
    (case,) = graph.branches["researcher"].cases
    assert case.targets == ("researcher_review",)
    picture = to_mermaid(graph)
    assert "researcher_review -.->|goto| researcher_tools" in picture
    assert build(graph.to_dict(), tools) == graph  # a stored graph reads back the same
    # approval is off by default, and a run of the example asks nothing
    assert "researcher_review" not in build(example(), tools).nodes
    doc["nodes"]["researcher"]["agent"]["approve_tools"] = ["send_email"]
    assert (
        "not one of the agent's tools"
        in problems(doc, tools)["nodes.researcher.agent.approve_tools[0]"]
    )


def test_an_agents_answer_is_structured_by_a_node_after_it(tools: Toolkit) -> None:
    doc = example()
    doc["nodes"]["researcher"]["agent"]["schema"] = {"type": "object"}
    assert "an llm node after it" in problems(doc, tools)["nodes.researcher.agent.schema"]
