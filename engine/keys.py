"""Every key a graph document may hold, in one table; any other key is refused.

A misspelt key (``"setings"``) or one from another engine (LangGraph's ``"checkpointer"``)
would otherwise be dropped without a word and the graph would run differently from what its
author wrote. :func:`unknown_keys` walks a document along :data:`SHAPES` and reports each key
it does not know, with its location, a "did you mean" when one is close, and, for keys that
mean something elsewhere (:data:`ELSEWHERE`), where that feature lives in hopgraph.

To accept a new key, add it to its shape in :data:`SHAPES`, and nothing else: the dialect
readers (:mod:`engine.dialects`) read it, and this module stops refusing it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import Problem

# A key's value is a leaf (``None``: not walked, e.g. a tool's free-form ``settings``), an
# object of a shape (``"map"``), an object of named objects of a shape (``"{node}"``: node id
# -> node), or a list of objects of a shape (``"[case]"``). A value of another type is left
# to the readers, which say what it should be.
SHAPES: Mapping[str, Mapping[str, str | None]] = {
    # -- canonical form ---------------------------------------------------------------------
    "canonical": {
        "name": None,
        "entry": None,
        "nodes": "{node}",
        "edges": None,
        "branches": "{branch}",
        "joins": None,
        "state": "{state_key}",
        "max_steps": None,
        "defaults": "defaults",
        "interrupt_before": None,
        "interrupt_after": None,
    },
    "node": {
        "tool": None,
        "settings": None,
        "map": "map",
        "goto": None,
        "defer": None,
        "retry": "retry",
        "timeout_s": None,
        "on_error": None,
        "wait": "wait",
        "interrupt": "interrupt",
        "graph": None,
        "input": None,
        "output": None,
    },
    "wait": {"seconds": None, "until": None},
    "interrupt": {
        "prompt": None,
        "key": None,
        "schema": None,
        "timeout_s": None,
        "on_timeout": None,
    },
    "defaults": {"retry": "retry", "timeout_s": None},
    "retry": {
        "max_attempts": None,
        "initial_interval_s": None,
        "backoff": None,
        "max_interval_s": None,
        "jitter": None,
        "retry_on": None,
    },
    "map": {"over": None, "as": None, "max_concurrency": None},
    "branch": {"cases": "[case]", "default": None, "router": None, "to": None},
    "case": {"when": None, "to": None},
    "state_key": {"reducer": None},
    # a model node's settings ({"llm": {...}} or {"agent": {...}}: engine/agents.py)
    "llm": {
        "provider": None,
        "model": None,
        "system": None,
        "messages": None,
        "tools": None,
        "inference": "inference",
        "output": None,
        "schema": None,
        "stream": None,
        "responses": None,
        "responses_file": None,
        "prompt": None,
        "tool_settings": None,
        "approve_tools": None,
    },
    "inference": {"max_tokens": None, "temperature": None, "top_p": None, "stop": None},
    # -- dialect 1: nodes {id: {tool, next}}, entry in start_node ------------------------------
    "dialect1": {
        "name": None,
        "start_node": None,
        "nodes": "{dialect1_node}",
        "joins": None,
        "state": "{state_key}",
        "max_steps": None,
        "defaults": "defaults",
        "interrupt_before": None,
        "interrupt_after": None,
    },
    "dialect1_node": {
        "tool": None,
        "next": "dialect1_next",
        "settings": None,
        "map": "map",
        "retry": "retry",
        "timeout_s": None,
        "on_error": None,
    },
    "dialect1_next": {"condition": None, "if_true": None, "if_false": None},
    # -- dialect 2: nodes {id: tool}, edges {from: to} -----------------------------------------
    "dialect2": {
        "name": None,
        "entry": None,
        "start_node": None,
        "nodes": None,
        "edges": None,
        "joins": None,
        "state": "{state_key}",
        "max_steps": None,
        "defaults": "defaults",
        "interrupt_before": None,
        "interrupt_after": None,
    },
    # -- dialect 3: nodes [{node_id, tool}], edges [{from, to, condition?}] --------------------
    "dialect3": {
        "name": None,
        "entry_node": None,
        "entry_point": None,
        "entry": None,
        "start_node": None,
        "nodes": "[dialect3_node]",
        "edges": "[dialect3_edge]",
        "joins": None,
        "state": "{state_key}",
        "max_steps": None,
        "defaults": "defaults",
        "interrupt_before": None,
        "interrupt_after": None,
    },
    "dialect3_node": {
        "node_id": None,
        "id": None,
        "tool": None,
        "function_name": None,
        "settings": None,
        "map": "map",
        "retry": "retry",
        "timeout_s": None,
        "on_error": None,
    },
    "dialect3_edge": {"from": None, "source": None, "to": None, "target": None, "condition": None},
}
"""Shape name -> its keys -> the shape of the key's value (see above)."""

_STATE_HINT = (
    'hopgraph declares how a key merges per key: "state": {"notes": {"reducer": "append"}}; '
    "keys without one are replaced"
)
ELSEWHERE: Mapping[str, str] = {
    # LangGraph's StateGraph / compile / invoke
    "checkpointer": (
        "LangGraph's checkpointer has no equivalent to set: every hopgraph run is durable, each "
        "step committed to the run store (DynamoDB on AWS, memory with --local)"
    ),
    "store": "LangGraph's store has no equivalent: keep shared data in the state or a tool",
    "recursion_limit": 'LangGraph\'s recursion_limit is "max_steps" (per graph, or per run)',
    "conditional_edges": (
        'conditional edges are "branches": {"node": {"cases": [{"when": "score >= 7", '
        '"to": "done"}], "default": "retry"}}'
    ),
    "entry_point": 'the entry node is "<entry>"',
    "start": 'the entry node is "<entry>"',
    "finish_point": 'a node finishes the run with an edge to END: "edges": {"node": "END"}',
    "state_schema": _STATE_HINT,
    "schema": _STATE_HINT,
    "channels": _STATE_HINT,
    "reducers": _STATE_HINT,
    "reducer": 'a reducer belongs to a state key: "state": {"key": {"reducer": "append"}}',
    "input": (
        "a run's input is not part of its graph: pass it when starting a run "
        '(POST /runs {"input": ...}, hopgraph run FILE --input)'
    ),
    "initial_state": (
        "a run's input is not part of its graph: pass it when starting a run "
        '(POST /runs {"input": ...}, hopgraph run FILE --input)'
    ),
    "config": 'a node\'s configuration is its "settings", which its tool reads as ctx.settings',
    "configurable": (
        'a node\'s configuration is its "settings", which its tool reads as ctx.settings'
    ),
    "send": 'LangGraph\'s Send is a map: "map": {"over": "items", "as": "item"} on the node',
    "function": 'a node names its tool: "tool": "<registered tool name>"',
    "func": 'a node names its tool: "tool": "<registered tool name>"',
    "action": 'a node names its tool: "tool": "<registered tool name>"',
    "max_concurrency": 'max_concurrency belongs to a node\'s "map": {"over", "as", ...}',
    "condition": 'a condition is the "when" of a branch case: {"when": "score >= 7", "to": "x"}',
    "next": 'routes leave a node by the graph\'s "edges" and "branches", not the node\'s',
}
"""Keys that are not hopgraph's where they were found, but say what their author meant:
where that feature lives in hopgraph, or that it has no equivalent. Consulted only for a key
its shape does not know. ``<entry>`` reads as the entry's key in the document's dialect."""

_ENTRY = {"dialect1": "start_node", "dialect3": "entry_node"}


def unknown_keys(doc: Any, shape: str, loc: str = "") -> list[Problem]:
    """Every key of ``doc`` (and of the objects within it) that its shape does not know."""
    problems: list[Problem] = []
    _walk(doc, shape, loc, problems)
    return problems


def _walk(value: Any, shape: str, loc: str, problems: list[Problem]) -> None:
    if not isinstance(value, Mapping):
        return
    keys = SHAPES[shape]
    for key, child in value.items():
        where = f"{loc}.{key}" if loc else str(key)
        if key not in keys:
            problems.append(Problem(where, _unknown(str(key), shape, keys)))
        elif keys[key] is not None:
            _walk_child(child, str(keys[key]), where, problems)


def _walk_child(value: Any, spec: str, loc: str, problems: list[Problem]) -> None:
    if spec.startswith("{") and isinstance(value, Mapping):
        for name, item in value.items():
            _walk(item, spec[1:-1], f"{loc}.{name}", problems)
    elif spec.startswith("[") and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, spec[1:-1], f"{loc}[{i}]", problems)
    elif spec[0] not in "{[":
        _walk(value, spec, loc, problems)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, else nothing."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(key: str, shape: str, keys: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.85)  # a typo
    if not close and key in ELSEWHERE:
        hint = ELSEWHERE[key].replace("<entry>", _ENTRY.get(shape, "entry"))
        return f"unknown key {key!r}: {hint}"
    close = close or difflib.get_close_matches(key, list(keys), n=1)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}; {_what(shape)} has {_list(keys)}"


def _what(shape: str) -> str:
    """``dialect3_edge`` -> "an edge", ``canonical`` and ``dialect2`` -> "a graph"."""
    if shape == "canonical" or (shape.startswith("dialect") and "_" not in shape):
        return "a graph"
    name = shape.split("_", 1)[1] if shape.startswith("dialect") else shape
    name = name.replace("_", " ")
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _list(keys: Mapping[str, Any]) -> str:
    names = list(keys)
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
