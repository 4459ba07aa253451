"""The code-review toolkit: analyse Python source, score it, and fix what can be fixed.

The tools form a loop (see ``examples/code_review.json``)::

    extract_functions -> check_complexity -> detect_issues -> suggest_improvements
        -> evaluate_quality --(quality_score >= 7 or iteration >= 5)--> END
                            \\--otherwise--> improve_code -> extract_functions

Every tool that reads ``code`` raises :class:`CodeSyntaxError` ("code does not parse:
line 3: invalid syntax") on code that does not parse, and :class:`CodeReviewError` on code
longer than :data:`MAX_CODE_CHARS`: the step fails with that message.

The tools take :data:`~engine.ast_lock.AST_LOCK` only around each parse or compile (one file
at a time), never around a whole analysis: a big review cannot stall other runs' work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from engine.toolkits.code_review import analysis, fixer, scoring, suggestions
from engine.toolkits.code_review.source import (
    MAX_CODE_CHARS,
    CodeReviewError,
    CodeSyntaxError,
    parse_state_code,
)
from engine.tools import ToolContext, Toolkit

__all__ = [
    "MAX_CODE_CHARS",
    "CodeReviewError",
    "CodeSyntaxError",
    "check_complexity",
    "detect_issues",
    "evaluate_quality",
    "extract_functions",
    "improve_code",
    "suggest_improvements",
    "toolkit",
]

toolkit = Toolkit("code_review")
F = TypeVar("F", bound=Callable[..., Any])


def _tool(
    *, aliases: Iterable[str] = (), reads: Iterable[str] = (), writes: Iterable[str] = ()
) -> Callable[[F], F]:
    """Register a tool of this toolkit (see the module docstring for the AST lock)."""
    return toolkit.tool(aliases=aliases, reads=reads, writes=writes)


def _list_of_dicts(state: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = state.get(key) or []
    if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
        raise CodeReviewError(f"state[{key!r}] must be a list of objects")
    return list(value)


def _complexity(state: Mapping[str, Any]) -> dict[str, int]:
    value = state.get("complexity") or {}
    if not isinstance(value, Mapping):
        raise CodeReviewError("state['complexity'] must map function names to numbers")
    return {str(k): int(v) for k, v in value.items()}


@_tool(reads=["code"], writes=["functions"])
def extract_functions(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """List every function and method: name, qualname, lines, argument count, docstring."""
    _code, tree = parse_state_code(state)
    return {"functions": [info.describe() for info in analysis.functions_of(tree)]}


@_tool(
    aliases=["calculate_complexity"],
    reads=["code"],
    writes=["complexity", "average_complexity", "max_complexity"],
)
def check_complexity(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Cyclomatic complexity of each function (radon), with the average and the maximum."""
    _code, tree = parse_state_code(state)
    per_function = analysis.complexities(analysis.functions_of(tree))
    values = list(per_function.values())
    return {
        "complexity": per_function,
        "average_complexity": round(sum(values) / len(values), 2) if values else 0.0,
        "max_complexity": max(values, default=0),
    }


@_tool(reads=["code"], writes=["issues"])
def detect_issues(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Find issues in the code: design, docstrings, likely bugs, unused names.

    Long functions, too many arguments, deep nesting, missing docstrings, bare ``except:``,
    mutable defaults (AST); unused imports and locals, undefined names (pyflakes); high
    cyclomatic complexity (radon).
    """
    _code, tree = parse_state_code(state)
    return {"issues": analysis.detect(tree)}


@_tool(reads=["issues", "complexity"], writes=["suggestions"])
def suggest_improvements(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """One concrete suggestion per issue: what to change, where, and to what."""
    return {"suggestions": suggestions.suggest(_list_of_dicts(state, "issues"), _complexity(state))}


@_tool(
    reads=["issues", "complexity", "functions", "iteration", "history"],
    writes=["quality_score", "iteration", "history"],
)
def evaluate_quality(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Score the code from 0 to 10 and count the iteration.

    The score weighs issues by severity per function (see ``scoring``); each evaluation is
    appended to ``history`` as ``{iteration, quality_score, issue_count}``.
    """
    issues = _list_of_dicts(state, "issues")
    score = scoring.quality_score(
        issues, _complexity(state), len(_list_of_dicts(state, "functions"))
    )
    iteration = int(state.get("iteration") or 0) + 1
    history = [
        *_list_of_dicts(state, "history"),
        {"iteration": iteration, "quality_score": score, "issue_count": len(issues)},
    ]
    return {"quality_score": score, "iteration": iteration, "history": history}


@_tool(reads=["code", "issues"], writes=["code", "fixes_applied"])
def improve_code(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Fix what is safe to fix, keeping comments and formatting.

    Bare ``except:``, mutable defaults, unused imports and locals, deep nesting (guard
    clauses), missing docstrings. If ``issues`` is in the state, only the kinds it lists are
    fixed; where to edit comes from a fresh analysis of ``code``, so stale line numbers in
    ``issues`` cannot misplace an edit.
    """
    code, _tree = parse_state_code(state)
    kinds = None
    if "issues" in state:
        kinds = {str(i.get("kind")) for i in _list_of_dicts(state, "issues")}
    new_code, fixes = fixer.improve(code, kinds)
    return {"code": new_code, "fixes_applied": [fix.as_dict() for fix in fixes]}
