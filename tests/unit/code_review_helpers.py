"""Shared by the code-review toolkit's tests: snippets in, tool outputs out."""

from __future__ import annotations

import io
import textwrap
import tokenize
from pathlib import Path
from typing import Any

from engine.toolkits.code_review import (
    detect_issues,
    improve_code,
)
from engine.tools import ToolContext

CTX = ToolContext(run_id="r", node="n", step=0)
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample_code.py"
LOOP = (
    "extract_functions",
    "check_complexity",
    "detect_issues",
    "suggest_improvements",
    "evaluate_quality",
)


def code(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def issues_of(source: str) -> list[tuple[str, int, str | None]]:
    found = detect_issues({"code": source}, CTX)["issues"]
    return [(i["kind"], i["line"], i["function"]) for i in found]


def kinds_of(source: str) -> set[str]:
    return {kind for kind, _line, _function in issues_of(source)}


def comments(source: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in tokens if t.type == tokenize.COMMENT]


def improved(source: str, **state: Any) -> tuple[str, list[dict[str, Any]]]:
    out = improve_code({"code": source, **state}, CTX)
    return out["code"], out["fixes_applied"]


def run_function(source: str, name: str, *calls: tuple[Any, ...]) -> list[Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<test>", "exec"), namespace)
    return [namespace[name](*args) for args in calls]
