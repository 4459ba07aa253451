"""Approving an agent's tool calls (engine/approvals.py) over the in-memory adapters with the
scripted model: the run pauses before any call of the reply runs, with a question showing
the calls; approved calls run, a rejected one never runs and the model reads why; per-call
answers mix both (and may edit a call's input); a value the question's schema refuses is a
422 and changes nothing; and the model node is not re-run by the answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

import pytest

from engine.errors import GraphValidationError, InvalidInputError
from engine.messages import tool_uses
from engine.tools import ToolContext, Toolkit, load_toolkits
from tests.worlds import World

sent: list[dict[str, Any]] = []


class Email(TypedDict):
    to: str
    body: str


class Lookup(TypedDict):
    name: str


kit = Toolkit("approval-tests")


@kit.tool
def send_email(args: Email, ctx: ToolContext) -> dict[str, Any]:
    """Send an email"""
    sent.append(dict(args))
    return {"sent": True}


@kit.tool
def lookup(args: Lookup, ctx: ToolContext) -> dict[str, Any]:
    """Find a person's address"""
    return {"address": f"{args['name'].lower()}@example.com"}


@pytest.fixture(autouse=True)
def _nothing_sent() -> None:
    sent.clear()


@pytest.fixture(scope="module")
def tools() -> Toolkit:
    loaded = load_toolkits(["functions.models.toolkit"])
    loaded.include(kit)
    return loaded


CALLS = [
    {"id": "c_find", "name": "lookup", "input": {"name": "Ann"}},
    {"id": "c_ann", "name": "send_email", "input": {"to": "ann@example.com", "body": "hi"}},
    {"id": "c_bob", "name": "send_email", "input": {"to": "bob@example.com", "body": "hi"}},
]


def agent(approve: Any = ("send_email",)) -> dict[str, Any]:
    return {
        "entry": "mailer",
        "max_steps": 12,
        "nodes": {
            "mailer": {
                "agent": {
                    "prompt": "Greet Ann and Bob by email.",
                    "tools": ["lookup", "send_email"],
                    "approve_tools": list(approve) if isinstance(approve, tuple) else approve,
                    "output": "answer",
                    "responses": [{"text": "Sending.", "tool_calls": CALLS}, "Done."],
                }
            }
        },
        "edges": {"mailer": "END"},
    }


def paused(world: World, doc: dict[str, Any]) -> str:
    run_id = world.start(doc)
    world.drain()
    assert world.store.get_run(run_id).status == "paused"
    assert not world.queue.hops  # nothing in flight while it waits
    return run_id


def results(run_state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each tool call's result block, by call id."""
    return {
        b["toolResult"]["toolUseId"]: b["toolResult"]
        for m in run_state["messages"]
        for b in m["content"]
        if "toolResult" in b
    }


def test_the_run_pauses_before_any_call_runs_with_a_question_showing_the_calls(
    tools: Toolkit,
) -> None:
    world = World(tools)
    run_id = paused(world, agent())
    (question,) = world.service.pending_questions(world.store.get_run(run_id))
    assert (question["task"], question["key"]) == ("mailer", "mailer_review")
    assert 'c_ann: send_email({"body": "hi", "to": "ann@example.com"})' in question["prompt"]
    assert "c_find" not in question["prompt"]  # lookup needs no approval
    per_call = question["schema"]["anyOf"][2]["properties"]["calls"]
    assert per_call["required"] == ["c_ann", "c_bob"]
    assert not sent
    run = world.store.get_run(run_id)
    assert "messages" not in run.state or not any(
        m.get("role") == "assistant" for m in run.state["messages"]
    )  # the model's message is held until the answer


def test_approved_calls_run_and_the_model_goes_on_without_running_again(tools: Toolkit) -> None:
    world = World(tools)
    run_id = paused(world, agent())
    world.service.resume_run(run_id, True)
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state["answer"]) == ("completed", "Done.")
    assert sent == [
        {"to": "ann@example.com", "body": "hi"},
        {"to": "bob@example.com", "body": "hi"},
    ]
    assert set(results(run.state)) == {"c_find", "c_ann", "c_bob"}
    assert all(r["status"] == "success" for r in results(run.state).values())
    # supersteps: the model (paused, answered), the review, the three calls, the model again
    steps = [s.node for s in world.store.list_steps(run_id).items]
    assert steps == ["mailer", "mailer_review", "mailer_tools", "mailer"]
    assistants = [m for m in run.state["messages"] if m["role"] == "assistant"]
    assert len(assistants) == 2  # the answered model message was committed once


def test_a_rejected_call_never_runs_and_the_model_reads_why(tools: Toolkit) -> None:
    world = World(tools)
    run_id = paused(world, agent())
    world.service.resume_run(run_id, {"approved": False, "reason": "not today"})
    world.drain()
    run = world.store.get_run(run_id)
    assert run.status == "completed" and not sent
    found = results(run.state)
    assert found["c_find"]["status"] == "success"  # needed no approval: it ran
    for ident in ("c_ann", "c_bob"):
        assert found[ident]["status"] == "error"
        text = found[ident]["content"][0]["text"]
        assert "A person rejected this tool call" in text and "not today" in text
    # the model's second turn came after the rejections: its request held them
    kinds = [
        "rejected" if "rejected" in json.dumps(m) else m["role"] for m in run.state["messages"]
    ]
    assert kinds[-1] == "assistant" and kinds.count("rejected") == 2
    assert kinds.index("rejected") < len(kinds) - 1
    assert run.state["answer"] == "Done."


def test_per_call_answers_mix_approval_rejection_and_an_edited_input(tools: Toolkit) -> None:
    world = World(tools)
    run_id = paused(world, agent(True))
    world.service.resume_run(
        run_id,
        {
            "calls": {
                "c_find": True,
                "c_ann": {"approved": True, "input": {"to": "ann@corp.example", "body": "hi"}},
                "c_bob": {"approved": False, "reason": "Bob left"},
            }
        },
    )
    world.drain()
    run = world.store.get_run(run_id)
    assert run.status == "completed"
    assert sent == [{"to": "ann@corp.example", "body": "hi"}]
    found = results(run.state)
    assert found["c_ann"]["status"] == "success" and found["c_find"]["status"] == "success"
    assert "Bob left" in found["c_bob"]["content"][0]["text"]
    # the assistant's message shows the call as it ran (replaced in place, by its id)
    first = next(m for m in run.state["messages"] if m["role"] == "assistant")
    ann = next(c for c in tool_uses(first) if c["toolUseId"] == "c_ann")
    assert ann["input"] == {"to": "ann@corp.example", "body": "hi"}


@pytest.mark.parametrize(
    "value",
    [
        "yes",
        {"approved": "yes"},
        {"calls": {"c_ann": True}},  # c_bob is not answered
        {"calls": {"c_ann": True, "c_bob": True, "c_eve": True}},
        {"calls": {"c_ann": {"approved": True, "input": "to bob"}, "c_bob": True}},
    ],
)
def test_an_answer_the_schema_refuses_is_422_and_changes_nothing(
    tools: Toolkit, value: Any
) -> None:
    world = World(tools)
    run_id = paused(world, agent())
    with pytest.raises(InvalidInputError, match="does not match the question's schema"):
        world.service.resume_run(run_id, value)
    assert world.store.get_run(run_id).status == "paused" and not world.queue.hops
    world.service.resume_run(run_id, False)  # a good answer is still taken
    world.drain()
    assert world.store.get_run(run_id).status == "completed" and not sent


def test_calls_that_need_no_approval_run_without_a_pause(tools: Toolkit) -> None:
    doc = agent()
    doc["nodes"]["mailer"]["agent"]["responses"] = [
        {"text": "Looking.", "tool_calls": [CALLS[0]]},
        {"text": "Sending.", "tool_calls": [CALLS[1]]},
        "Done.",
    ]
    world = World(tools)
    run_id = paused(world, doc)  # the lookup ran; the email waits
    assert "c_find" in results(world.store.get_run(run_id).state)
    (question,) = world.service.pending_questions(world.store.get_run(run_id))
    assert question["schema"]["anyOf"][2]["properties"]["calls"]["required"] == ["c_ann"]
    world.service.resume_run(run_id, {"calls": {"c_ann": True}})
    world.drain()
    run = world.store.get_run(run_id)
    assert run.status == "completed" and run.state["answer"] == "Done."
    assert len(sent) == 1


def test_approve_tools_is_checked_with_its_location(tools: Toolkit) -> None:
    doc = agent(["send_mail"])
    doc["nodes"]["ask"] = {"llm": {"approve_tools": True, "responses": ["x"]}}
    with pytest.raises(GraphValidationError) as failed:
        World(tools).graph(doc)
    found = {p.location: p.message for p in failed.value.problems}
    assert found["nodes.mailer.agent.approve_tools[0]"] == (
        "'send_mail' is not one of the agent's tools"
    )
    assert "an llm node runs none" in found["nodes.ask.llm.approve_tools"]
    doc = agent()
    doc["nodes"]["mailer_review"] = {"tool": "lookup"}
    with pytest.raises(GraphValidationError, match=r"taken by agent 'mailer'.s review node"):
        World(tools).graph(doc)
    doc = agent("send_email")
    with pytest.raises(GraphValidationError, match="a list of the agent's tool names"):
        World(tools).graph(doc)


def test_without_approve_tools_the_agent_runs_every_call(tools: Toolkit) -> None:
    world = World(tools)
    run_id = world.start(agent(False))
    world.drain()
    run = world.store.get_run(run_id)
    assert run.status == "completed" and len(sent) == 2
    assert "mailer_review" not in json.dumps(world.store.get_run(run_id).state)


def test_every_hop_delivered_twice_commits_each_call_once_and_never_runs_a_rejected_one(
    tools: Toolkit,
) -> None:
    world = World(tools)
    run_id = world.start(agent())

    def twice(hop: Any) -> None:
        world.deliver(hop)
        world.deliver(hop)

    world.queue.drain(twice)
    assert world.store.get_run(run_id).status == "paused"
    assert len(world.service.pending_questions(world.store.get_run(run_id))) == 1
    world.service.resume_run(run_id, {"calls": {"c_ann": True, "c_bob": False}})
    world.queue.drain(twice)
    run = world.store.get_run(run_id)
    assert run.status == "completed"
    # delivery is at least once (a tool keys its side effects on ctx.idempotency_key)
    assert {e["to"] for e in sent} == {"ann@example.com"}
    ids = [m["id"] for m in run.state["messages"]]
    assert len(ids) == len(set(ids)) == 6  # prompt, reply, three results, answer
