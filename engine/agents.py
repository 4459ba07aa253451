"""Model nodes and tool-calling agents, as ordinary nodes, tasks and sends.

Two node kinds a graph may write (the canonical dialect), expanded before validation:

- ``{"llm": {...}}``: a node whose tool is :data:`LLM_TOOL`. It reads the message list under
  ``messages`` (a key with the ``messages`` reducer, LangGraph's ``add_messages``), calls the
  model with the tools it names, and appends the assistant's message with a stable id (the
  task's superstep and name: a task delivered twice replaces its message, never adds one). With
  ``schema`` the model answers through a forced tool and the answer goes under ``output``;
  without ``schema``, ``output`` receives the final text. ``prompt``: the user's message the
  node starts the conversation with when the list holds none.
- ``{"agent": {...}}``: the same model node, plus a tool node ``<id>_tools`` and the loop
  between them (LangGraph's ``create_react_agent``: a model node, a ``ToolNode`` and
  ``tools_condition``). When the model asks for tools, its task sends one item per call to
  the tool node (a :class:`~engine.tools.Send`: one durable task per call, each appending its
  tool-result message); the tool node's edge leads back to the model; when the model answers
  without tool use, the run goes where the agent's own edge went (END if it has none). The
  step limit bounds the rounds. With ``approve_tools``, a person approves its calls first
  (:mod:`engine.approvals`: a review node, and the model's task pausing with its message).

The model itself is behind :class:`~engine.messages.ChatModel`; :func:`model_toolkit` takes
the registry the model's tools come from and a resolver of providers (functions/models/).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from engine.approvals import (
    REVIEW_TOOL,
    ask,
    expand_review,
    needing,
    read_approve,
    rejected,
    run_review,
)
from engine.errors import Problem
from engine.graph import END, END_ALIASES
from engine.keys import unknown_keys
from engine.messages import (
    STRUCTURED_TOOL,
    ModelRequest,
    ModelResolver,
    TokenSink,
    ToolSpec,
    normalize,
    text_message,
    text_of,
    tool_result_message,
    tool_uses,
)
from engine.retry_policy import MODEL_RETRY
from engine.tools import Command, Interrupt, Send, ToolContext, ToolError, Toolkit, call_tool

LLM_TOOL = "llm"
CALL_TOOL = "tool_call"
PROVIDERS = ("bedrock", "openai", "scripted")
FAILURE_KEYS = ("retry", "timeout_s", "on_error")
"""What a model node may say of its failures beside its settings (engine/retry_policy.py);
an agent's apply to its model node."""
_NODE_KEYS = {
    "llm": frozenset({"llm", *FAILURE_KEYS}),
    "agent": frozenset({"agent", *FAILURE_KEYS}),
}


# -- expansion of the node kinds ---------------------------------------------------------------
def expand_model_nodes(
    doc: Any, tools: Toolkit | None = None, known: Collection[str] | None = None
) -> tuple[Any, list[Problem]]:
    """``doc`` with its ``llm`` and ``agent`` nodes written as plain nodes (a copy; ``doc``
    itself when it has none), and the problems found in their settings. ``tools``/``known``:
    the registry and the tool names a created graph is checked against (``None``: taken on
    trust, as a stored graph is)."""
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, dict) or not any(
        isinstance(n, dict) and ("llm" in n or "agent" in n) for n in nodes.values()
    ):
        return doc, []
    out = copy.deepcopy(doc)
    problems: list[Problem] = []
    for node_id, node in list(out["nodes"].items()):
        if not isinstance(node, dict) or not ("llm" in node or "agent" in node):
            continue
        kind = "agent" if "agent" in node else "llm"
        loc = f"nodes.{node_id}"
        for key in sorted(set(node) - _NODE_KEYS[kind]):
            problems.append(
                Problem(
                    f"{loc}.{key}",
                    f'an {kind} node has its "{kind}" settings and {", ".join(FAILURE_KEYS)}; '
                    f"{key!r} is not one of them",
                )
            )
        spec = _check_spec(node[kind], f"{loc}.{kind}", kind, tools, known, problems)
        if spec is None:
            out["nodes"][node_id] = {"tool": LLM_TOOL}
            continue
        key = spec.get("messages", "messages")
        _declare_messages(out, key, problems)
        failure = failure_of(node, out)
        if kind == "llm":
            out["nodes"][node_id] = {"tool": LLM_TOOL, "settings": spec, **failure}
            continue
        _expand_agent(out, node_id, spec, key, problems)
        if node_id in out["nodes"] and "tool" in out["nodes"][node_id]:
            out["nodes"][node_id].update(failure)
    return out, problems


def failure_of(node: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """A model node's ``retry``, ``timeout_s`` and ``on_error`` as written, and
    :data:`~engine.retry_policy.MODEL_RETRY` when neither it nor the graph's ``defaults``
    name a ``retry``: model calls are retried on throttling by default."""
    failure = {k: node[k] for k in FAILURE_KEYS if k in node}
    defaults = doc.get("defaults")
    if "retry" not in failure and not (
        isinstance(defaults, Mapping) and defaults.get("retry") is not None
    ):
        failure["retry"] = MODEL_RETRY.to_dict()
    return failure


def _expand_agent(
    out: dict[str, Any], node_id: str, spec: dict[str, Any], key: str, problems: list[Problem]
) -> None:
    tool_node = f"{node_id}_tools"
    if tool_node in out["nodes"]:
        problems.append(
            Problem(f"nodes.{tool_node}", f"the name is taken by agent {node_id!r}'s tool node")
        )
        return
    edges = out.setdefault("edges", {})
    if isinstance(out.get("branches"), dict) and node_id in out["branches"]:
        problems.append(
            Problem(
                f"branches.{node_id}",
                "an agent leaves by one edge (where it "
                "goes once the model answers without tool calls)",
            )
        )
        return
    then = edges.pop(node_id, END) if isinstance(edges, dict) else END
    if not isinstance(then, str):
        problems.append(Problem(f"edges.{node_id}", "an agent's edge names one node or END"))
        return
    then = END if then in END_ALIASES else then
    out["nodes"][node_id] = {
        "tool": LLM_TOOL,
        "settings": {**spec, "tool_node": tool_node, "then": then},
        "goto": [tool_node, then],
    }
    out["nodes"][tool_node] = {
        "tool": CALL_TOOL,
        "settings": {
            "messages": key,
            "tools": list(spec.get("tools", [])),
            "tool_settings": dict(spec.get("tool_settings", {})),
        },
    }
    edges[tool_node] = node_id
    if spec.get("approve_tools"):
        expand_review(out, node_id, key, problems)


def _declare_messages(out: dict[str, Any], key: str, problems: list[Problem]) -> None:
    state = out.setdefault("state", {})
    if not isinstance(state, dict):
        return  # the validator reports a malformed "state"
    declared = state.get(key)
    if declared is None:
        state[key] = {"reducer": "messages"}
    elif not (isinstance(declared, dict) and declared.get("reducer") == "messages"):
        problems.append(
            Problem(
                f"state.{key}.reducer", 'a model node\'s message list needs the "messages" reducer'
            )
        )


def _check_spec(
    spec: Any,
    loc: str,
    kind: str,
    tools: Toolkit | None,
    known: Collection[str] | None,
    problems: list[Problem],
) -> dict[str, Any] | None:
    if not isinstance(spec, dict):
        problems.append(Problem(loc, 'must be an object: {"provider": "bedrock", "model": ...}'))
        return None
    before = len(problems)
    problems.extend(unknown_keys(spec, "llm", loc))
    provider = spec.get("provider", "scripted")
    if provider not in PROVIDERS:
        problems.append(Problem(f"{loc}.provider", f"one of {', '.join(PROVIDERS)}"))
    if provider != "scripted" and not (isinstance(spec.get("model"), str) and spec["model"]):
        problems.append(Problem(f"{loc}.model", "name the model (a string)"))
    for name in ("system", "messages", "output", "responses_file", "model", "prompt"):
        if name in spec and not isinstance(spec[name], str):
            problems.append(Problem(f"{loc}.{name}", "must be a string"))
    if "stream" in spec and not isinstance(spec["stream"], bool):
        problems.append(Problem(f"{loc}.stream", "must be true or false"))
    settings = spec.get("tool_settings", {})
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        problems.append(Problem(f"{loc}.tool_settings", "an object of each tool's settings"))
    if "responses" in spec and not isinstance(spec["responses"], list):
        problems.append(Problem(f"{loc}.responses", "a list of the model's answers, in order"))
    inference = spec.get("inference", {})
    if not isinstance(inference, dict):
        problems.append(Problem(f"{loc}.inference", "must be an object"))
    schema = spec.get("schema")
    if schema is not None and kind == "agent":
        problems.append(
            Problem(
                f"{loc}.schema",
                "an agent's model must be free to call its "
                "tools: structure its answer with an llm node after it",
            )
        )
    elif schema is not None:
        if not (isinstance(schema, dict) and schema.get("type") == "object"):
            problems.append(
                Problem(
                    f"{loc}.schema",
                    'a JSON schema of an object: {"type": "object", "properties": {...}}',
                )
            )
        if not isinstance(spec.get("output"), str):
            problems.append(Problem(f"{loc}.output", "name the state key the answer goes to"))
    _check_tools(spec.get("tools", []), f"{loc}.tools", kind, tools, known, problems)
    if "approve_tools" in spec:
        spec["approve_tools"] = read_approve(spec, f"{loc}.approve_tools", kind, problems)
    return spec if len(problems) == before else None


def _check_tools(
    names: Any,
    loc: str,
    kind: str,
    tools: Toolkit | None,
    known: Collection[str] | None,
    problems: list[Problem],
) -> None:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(Problem(loc, "a list of registered tool names"))
        return
    if kind == "agent" and not names:
        problems.append(Problem(loc, "an agent offers its model at least one tool"))
    if known is None:
        return
    for i, name in enumerate(names):
        if name not in known:
            problems.append(Problem(f"{loc}[{i}]", f"unknown tool {name!r}"))
        elif tools is not None and tools.get(name).input_schema is None:
            problems.append(
                Problem(
                    f"{loc}[{i}]",
                    f"tool {name!r} declares no input schema "
                    "(input= or a typed first parameter): a model cannot "
                    "call it",
                )
            )


# -- the tools that run them -------------------------------------------------------------------
def model_toolkit(registry: Toolkit, resolve: ModelResolver, streams: Any = None) -> Toolkit:
    """The tools of model nodes (:data:`LLM_TOOL`) and of agents' tool nodes
    (:data:`CALL_TOOL`), calling the tools of ``registry`` and the providers ``resolve``
    gives. ``streams``: ``(ctx) -> TokenBatcher | None``, where a streaming node's text goes
    (:data:`engine.streams.channel`'s ``sink`` by default)."""
    if streams is None:
        from engine.streams import channel

        streams = channel.sink
    toolkit = Toolkit("models")

    def llm(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any] | Command | Interrupt:
        sink = streams(ctx) if ctx.settings.get("stream") else None
        try:
            return run_model(state, ctx, registry, resolve, sink)
        finally:
            if sink is not None:
                sink.flush()  # the rest of the text, before the step commits

    def tool_call(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return run_tool_call(state, ctx, registry)

    toolkit.add(_tool(LLM_TOOL, llm, "Call a chat model on the run's messages"))
    toolkit.add(_tool(CALL_TOOL, tool_call, "Run one tool call a model asked for"))
    toolkit.add(_tool(REVIEW_TOOL, run_review, "Send an agent's reviewed tool calls to its tools"))
    return toolkit


def _tool(name: str, fn: Any, description: str) -> Any:
    from engine.tools import Tool

    return Tool(name=name, fn=fn, description=description)


def run_model(
    state: Mapping[str, Any],
    ctx: ToolContext,
    registry: Toolkit,
    resolve: ModelResolver,
    sink: TokenSink | None = None,
) -> dict[str, Any] | Command | Interrupt:
    """One model call: the request from the state and the node's settings, the assistant's
    message appended with the task's id, and (an agent) where to go: a send per tool call,
    or on once the model answers."""
    spec = ctx.settings
    key = spec.get("messages", "messages")
    history = [normalize(m, f"{key}[{i}]") for i, m in enumerate(state.get(key) or [])]
    added: list[dict[str, Any]] = []
    if spec.get("prompt") and not any(m["role"] == "user" for m in history):
        added.append(text_message("user", spec["prompt"], f"{ctx.node}:prompt"))
        history.append(added[0])
    offered = []
    for name in spec.get("tools", []):
        tool = registry.get(name)
        offered.append(ToolSpec(name, tool.description, tool.input_schema or {"type": "object"}))
    force = None
    if spec.get("schema") is not None:
        offered.append(
            ToolSpec(STRUCTURED_TOOL, "Give the answer in this structure", spec["schema"])
        )
        force = STRUCTURED_TOOL
    request = ModelRequest(
        model=spec.get("model", ""),
        messages=history,
        system=spec.get("system", ""),
        tools=tuple(offered),
        inference=MappingProxyType(dict(spec.get("inference", {}))),
        force_tool=force,
        settings=spec,
        attempt=ctx.attempt,
    )
    response = resolve(spec).converse(request, sink)
    message = {
        **response.message,
        "id": message_id(ctx),
        "metadata": usage_entry(response),
    }
    updates: dict[str, Any] = {key: [*added, message]}
    calls = [c for c in tool_uses(message) if c["name"] != STRUCTURED_TOOL]
    if force is not None:
        answer = next((c["input"] for c in tool_uses(message) if c["name"] == force), None)
        if answer is None:
            raise ValueError(
                f"the model did not answer through {force!r} (stop reason {response.stop_reason!r})"
            )
        updates[spec["output"]] = answer
    elif spec.get("output") and not calls:
        updates[spec["output"]] = text_of(message)
    tool_node = spec.get("tool_node")
    if tool_node is None:
        return updates
    if spec.get("review") is not None:  # its calls need approval (engine/approvals.py)
        updates[spec["review"]] = None
        asked = needing(calls, spec.get("approve_tools", ()))
        if asked:
            return ask(ctx, updates, calls, asked)
    if calls:
        return Command(updates, [Send(tool_node, {"call": c}) for c in calls])
    return Command(updates, spec.get("then", END))


def message_id(ctx: ToolContext) -> str:
    """A model task's message id: its superstep and task, unique within the run and the same
    however often the task is delivered (the ``messages`` reducer then replaces, never adds).
    It names no run, so a run and its in-process twin hold the same state."""
    return f"{ctx.step}:{ctx.task}"


def usage_entry(response: Any) -> dict[str, Any]:
    """What a model task's log entry records: model, tokens, latency, stop reason."""
    return {
        "model": response.model,
        "input_tokens": response.usage.input_tokens,
        "output_tokens": response.usage.output_tokens,
        "latency_ms": round(response.latency_ms, 1),
        "stop_reason": response.stop_reason,
    }


def run_tool_call(state: Mapping[str, Any], ctx: ToolContext, registry: Toolkit) -> dict[str, Any]:
    """One tool call a model asked for (a task sent ``{"call": toolUse}``), answered by a
    tool-result message whose id derives from the call's: a redelivered task replaces it.
    A tool that fails, an unknown tool or a bad input is an error result the model sees
    (LangGraph's ``ToolNode`` default), not a failed run."""
    call = state.get("call")
    if not isinstance(call, Mapping) or not isinstance(call.get("toolUseId"), str):
        raise ValueError("a tool node runs on {'call': <a toolUse block>}, sent by its model")
    key = ctx.settings.get("messages", "messages")
    ident, name = call["toolUseId"], str(call.get("name"))
    refused = rejected(ident, state.get("review"))
    if refused is not None:  # a person said no: the tool does not run, the model reads why
        return {key: [refused]}
    if name not in ctx.settings.get("tools", ()) or name not in registry:
        return {key: [tool_result_message(ident, f"unknown tool {name!r}", error=True)]}
    tool = registry.get(name)
    args = dict(call.get("input") or {})
    if tool.input_model is not None:
        try:
            args = tool.input_model.model_validate(args).model_dump()
        except Exception as exc:  # the model sees what was wrong with its input
            return {key: [tool_result_message(ident, f"invalid input: {exc}", error=True)]}
    try:
        own = ctx.settings.get("tool_settings", {}).get(name, {})
        result = call_tool(
            tool, MappingProxyType(args), replace(ctx, settings=MappingProxyType(own))
        )
    except ToolError as exc:
        return {key: [tool_result_message(ident, f"{exc.error_type}: {exc.message}", error=True)]}
    body: Any = result["text"] if set(result) == {"text"} else result
    return {key: [tool_result_message(ident, body)]}
