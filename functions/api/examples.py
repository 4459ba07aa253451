"""Examples the OpenAPI document shows: the code-review graph in each accepted dialect.

They are plain data (no engine import) and double as documentation of the dialects; the
functional tests post each of them and check that it is accepted.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_GRAPH_ID = "g_5f1c2a9e0b7d4c3e8a61"
EXAMPLE_RUN_ID = "r_9b2e64c1d0a34f7e8c5b1a20"
EXAMPLE_TIME = "2025-01-15T09:30:00.000Z"
DONE_WHEN = "quality_score >= 7 or iteration >= 5"

CANONICAL: dict[str, Any] = {
    "name": "code_review",
    "entry": "extract",
    "nodes": {
        "extract": {"tool": "extract_functions"},
        "complexity": {"tool": "check_complexity"},
        "issues": {"tool": "detect_issues"},
        "suggest": {"tool": "suggest_improvements"},
        "evaluate": {"tool": "evaluate_quality"},
        "improve": {"tool": "improve_code"},
    },
    "edges": {
        "extract": "complexity",
        "complexity": "issues",
        "issues": "suggest",
        "suggest": "evaluate",
        "improve": "extract",
    },
    "branches": {"evaluate": {"cases": [{"when": DONE_WHEN, "to": "END"}], "default": "improve"}},
    "max_steps": 50,
}

DIALECT1: dict[str, Any] = {
    "name": "code_review",
    "start_node": "extract",
    "nodes": {
        "extract": {"tool": "extract_functions", "next": "complexity"},
        "complexity": {"tool": "check_complexity", "next": "issues"},
        "issues": {"tool": "detect_issues", "next": "suggest"},
        "suggest": {"tool": "suggest_improvements", "next": "evaluate"},
        "evaluate": {
            "tool": "evaluate_quality",
            "next": {"condition": DONE_WHEN, "if_true": "end", "if_false": "improve"},
        },
        "improve": {"tool": "improve_code", "next": "extract"},
    },
}

DIALECT2: dict[str, Any] = {
    "name": "code_review_once",
    "nodes": {
        "extract": "extract_functions",
        "complexity": "check_complexity",
        "issues": "detect_issues",
        "evaluate": "evaluate_quality",
    },
    "edges": {
        "extract": "complexity",
        "complexity": "issues",
        "issues": "evaluate",
        "evaluate": "END",
    },
}

DIALECT3: dict[str, Any] = {
    "name": "code_review",
    "entry_point": "extract",
    "nodes": [
        {"node_id": "extract", "function_name": "extract_functions"},
        {"node_id": "complexity", "function_name": "check_complexity"},
        {"node_id": "issues", "function_name": "detect_issues"},
        {"node_id": "suggest", "function_name": "suggest_improvements"},
        {"node_id": "evaluate", "function_name": "evaluate_quality"},
        {"node_id": "improve", "function_name": "improve_code"},
    ],
    "edges": [
        {"from": "extract", "to": "complexity"},
        {"from": "complexity", "to": "issues"},
        {"from": "issues", "to": "suggest"},
        {"from": "suggest", "to": "evaluate"},
        {"from": "evaluate", "to": "END", "condition": DONE_WHEN},
        {"from": "evaluate", "to": "improve"},
        {"from": "improve", "to": "extract"},
    ],
}

GRAPH_EXAMPLES: dict[str, dict[str, Any]] = {
    "canonical": {
        "summary": "Canonical form: entry, nodes, edges, branches",
        "value": CANONICAL,
    },
    "dialect1": {
        "summary": "Nodes with `next` (a node, `end`, or {condition, if_true, if_false})",
        "value": DIALECT1,
    },
    "dialect2": {
        "summary": "Nodes as {id: tool} and edges as {from: to}; the first node is the entry",
        "value": DIALECT2,
    },
    "dialect3": {
        "summary": "Lists of nodes and edges, conditions on edges",
        "value": DIALECT3,
    },
}

SAMPLE_CODE = "def add(a, b):\n    return a + b\n\n\ndef unused():\n    import os\n    pass\n"

RUN_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "minimal": {
        "summary": "Start a run",
        "value": {"graph_id": EXAMPLE_GRAPH_ID, "input": {"code": SAMPLE_CODE}},
    },
    "idempotent": {
        "summary": "Start a run at most once per key, with a step limit",
        "value": {
            "graph_id": EXAMPLE_GRAPH_ID,
            "input": {"code": SAMPLE_CODE},
            "idempotency_key": "review-pr-1234",
            "max_steps": 30,
        },
    },
}

EXAMPLE_STATE: dict[str, Any] = {
    "code": SAMPLE_CODE,
    "quality_score": 8.5,
    "iteration": 1,
}

EXAMPLE_LOG_ENTRY: dict[str, Any] = {
    "seq": 4,
    "node": "evaluate",
    "tool": "evaluate_quality",
    "status": "ok",
    "updates": {"quality_score": 8.5, "iteration": 1},
    "next": "END",
    "started_at": EXAMPLE_TIME,
    "duration_ms": 0.42,
    "error": None,
    "attempt": 1,
    "run_status": "completed",
}
