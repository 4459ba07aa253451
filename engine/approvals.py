"""Approving an agent's tool calls before they run (``"approve_tools"``), with the pauses
of :mod:`engine.pauses` and nothing new in the protocol.

``{"agent": {..., "approve_tools": true}}`` asks about every tool call; a list of tool names
(``["send_email"]``) asks about calls of those tools only. When the model's reply asks for a
call that needs approval, the model task returns ``ctx.interrupt(...)`` with its message held:
the run pauses before any call of that reply runs (those that need no approval wait too),
with a question that shows each call (name, input) and a JSON schema for the answer. The
answer is written under ``<agent>_review`` (a state key), the model node's branch sees it
and goes to ``<agent>_review`` (a node), which sends every call to the tool node as usual,
each with its decision: an approved call runs (with the person's ``input`` if they edited
it), a rejected one does not run and answers the model with a tool result saying a person
rejected it, and why. The model then goes on. The model node is not re-run::

    researcher ──(calls need approval: pause, message held)── resume {value}
        └─ branch: get("researcher_review") is not None ─> researcher_review
              └─ a Send per call ─> researcher_tools (runs, or answers "rejected") ─> researcher

The answer, one of:

- ``true`` / ``false``: approve / reject every call asked about;
- ``{"approved": false, "reason": "..."}``: the same, with a reason the model reads;
- ``{"calls": {"<toolUseId>": <decision>, ...}}``: one decision per call asked about (every
  one named), each ``true``, ``false`` or ``{"approved": bool, "reason"?: str,
  "input"?: {...}}``; ``input`` replaces the call's arguments (the assistant's message is
  rewritten in place, by its id, so the model sees the call that ran).

LangGraph's equivalents: ``HumanInTheLoopMiddleware(interrupt_on={"send_email": True})``
(decisions approve / edit / reject) and the "review tool calls" how-to (``interrupt()`` in a
review node between the model and the ``ToolNode``); ``interrupt_before=["tools"]`` pauses
before every call with no per-call answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import Problem
from engine.messages import tool_result_message, tool_uses
from engine.tools import Command, Interrupt, Send, ToolContext, bounded_text

REVIEW_TOOL = "tool_review"
MAX_INPUT_CHARS = 400
"""How much of a call's input the question's text shows (the schema and the held message
carry all of it)."""

_REASON = {"type": "string", "description": "what the model is told"}
_DECISION: dict[str, Any] = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "properties": {
                "approved": {"type": "boolean"},
                "reason": _REASON,
                "input": {"type": "object", "description": "the arguments to run it with"},
            },
            "required": ["approved"],
            "additionalProperties": False,
        },
    ]
}


def review_name(node_id: str) -> str:
    """The review node of agent ``node_id``, which is also the state key of its answer."""
    return f"{node_id}_review"


def read_approve(
    spec: Mapping[str, Any], loc: str, kind: str, problems: list[Problem]
) -> list[str]:
    """A model node's ``approve_tools`` as written: the tool names whose calls need approval
    (``[]``: none)."""
    value, tools = spec.get("approve_tools"), spec.get("tools")
    offered = [t for t in tools if isinstance(t, str)] if isinstance(tools, list) else []
    if kind != "agent":
        problems.append(Problem(loc, "an agent approves its tool calls: an llm node runs none"))
        return []
    if value is None or value is False:
        return []
    if value is True:
        return offered
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        problems.append(Problem(loc, "true (every call) or a list of the agent's tool names"))
        return []
    for i, name in enumerate(value):
        if name not in offered:
            problems.append(Problem(f"{loc}[{i}]", f"{name!r} is not one of the agent's tools"))
    return list(value)


def expand_review(out: dict[str, Any], node_id: str, key: str, problems: list[Problem]) -> None:
    """Add agent ``node_id``'s review node and the branch that leads to it once answered."""
    review = review_name(node_id)
    branches = out.setdefault("branches", {})
    if not isinstance(branches, dict):
        return  # the validator reports a malformed "branches"
    if review in out["nodes"]:
        problems.append(
            Problem(f"nodes.{review}", f"the name is taken by agent {node_id!r}'s review node")
        )
        return
    model = out["nodes"][node_id]
    settings = model["settings"]
    settings["review"] = review
    out["nodes"][review] = {
        "tool": REVIEW_TOOL,
        "settings": {
            "messages": key,
            "agent": node_id,
            "tool_node": settings["tool_node"],
            "approve": list(settings["approve_tools"]),
        },
        "goto": [settings["tool_node"], node_id],
    }
    # END among a task's other targets ends nothing: the model's own goto still decides.
    branches[node_id] = {
        "cases": [{"when": f"get({json.dumps(review)}) is not None", "to": review}],
        "default": "END",
    }


def needing(calls: Sequence[Mapping[str, Any]], approve: Sequence[str]) -> list[Mapping[str, Any]]:
    """The calls of ``calls`` that need approval: those of the tools ``approve`` names."""
    return [c for c in calls if c.get("name") in approve]


def ask(
    ctx: ToolContext, updates: dict[str, Any], calls: Sequence[Mapping[str, Any]],
    asked: Sequence[Mapping[str, Any]],
) -> Interrupt:  # fmt: skip
    """The model task's question: its updates held, the answer under the review key."""
    review = str(ctx.settings["review"])
    lines = [f"Agent {ctx.node!r} asks to run {len(calls)} tool call(s); approve these?"]
    for call in asked:
        shown = bounded_text(json.dumps(call.get("input") or {}, sort_keys=True), MAX_INPUT_CHARS)
        lines.append(f"- {call['toolUseId']}: {call['name']}({shown})")
    lines.append(
        'Answer true, false, {"approved": false, "reason": "..."}, or per call '
        '{"calls": {"<id>": true | {"approved": false, "reason": "..."}}}'
    )
    return ctx.interrupt(
        "\n".join(lines), key=review, schema=answer_schema(asked), update={**updates, review: None}
    )


def answer_schema(asked: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema of an answer about ``asked``: all at once, or one decision per call."""
    per_call = {
        str(c["toolUseId"]): {
            **_DECISION,
            "description": f"{c['name']}({json.dumps(c.get('input') or {}, sort_keys=True)})",
        }
        for c in asked
    }
    return {
        "anyOf": [
            {"type": "boolean"},
            {
                "type": "object",
                "properties": {"approved": {"type": "boolean"}, "reason": _REASON},
                "required": ["approved"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "calls": {
                        "type": "object",
                        "properties": per_call,
                        "required": sorted(per_call),
                        "additionalProperties": False,
                    }
                },
                "required": ["calls"],
                "additionalProperties": False,
            },
        ]
    }


def decisions(answer: Any, asked: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each asked call's decision ``{"approved", "reason"?, "input"?}`` from an answer the
    schema accepted."""
    if isinstance(answer, Mapping) and "calls" in answer:
        out = {}
        for ident in asked:
            one = answer["calls"].get(ident, False)
            out[ident] = {"approved": one} if isinstance(one, bool) else dict(one)
        return out
    whole = {"approved": answer} if isinstance(answer, bool) else dict(answer)
    return {ident: dict(whole) for ident in asked}


def run_review(state: Mapping[str, Any], ctx: ToolContext) -> Command:
    """The review node: every call of the agent's last message sent to its tool node, each
    with its decision (a call that needed none runs; an edited input rewrites the message,
    by its id, as LangGraph's middleware rewrites its AI message)."""
    spec = ctx.settings
    key, agent = spec["messages"], spec["agent"]
    listed = [m for m in state.get(key) or [] if isinstance(m, Mapping)]
    asking = f"{ctx.step - 1}:{agent}"  # the model's message, one superstep before (its id)
    message = next((m for m in listed if m.get("id") == asking), None) or next(
        (m for m in reversed(listed) if m.get("role") == "assistant"), None
    )
    calls = tool_uses(message) if isinstance(message, Mapping) else []
    asked = [str(c["toolUseId"]) for c in needing(calls, spec.get("approve", ()))]
    decided = decisions(state.get(review_name(agent)), asked)
    sends, edited = [], {}
    for call in calls:
        decision = decided.get(call["toolUseId"], {"approved": True})
        if decision.get("approved") and "input" in decision:
            call = {**call, "input": dict(decision["input"])}
            edited[call["toolUseId"]] = call
        sends.append(Send(spec["tool_node"], {"call": call, "review": decision}))
    updates: dict[str, Any] = {}
    if edited and isinstance(message, Mapping):
        updates[key] = [_with_calls(message, edited)]
    return Command(updates, sends or agent)


def _with_calls(message: Mapping[str, Any], calls: Mapping[str, Any]) -> dict[str, Any]:
    content = []
    for block in message.get("content") or []:
        use = block.get("toolUse") if isinstance(block, Mapping) else None
        if isinstance(use, Mapping) and use.get("toolUseId") in calls:
            block = {**block, "toolUse": dict(calls[use["toolUseId"]])}
        content.append(block)
    return {**message, "content": content}


def rejected(ident: str, review: Any) -> dict[str, Any] | None:
    """The tool-result message of a call a person rejected (``None``: it may run)."""
    if not isinstance(review, Mapping) or review.get("approved", True):
        return None
    reason = review.get("reason")
    text = "A person rejected this tool call; it did not run."
    if reason:
        text += f" Reason: {reason}"
    return tool_result_message(ident, text, error=True)
