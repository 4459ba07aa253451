"""One concrete suggestion per issue: what to change, where, and to what."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.toolkits.code_review.analysis import MAX_ARGUMENTS, MAX_COMPLEXITY, MAX_FUNCTION_LINES

_EMPTY = {"list": "[]", "dict": "{}", "set": "set()"}


def _quoted(message: str, index: int = 0) -> str:
    names = re.findall(r"'([^']*)'", message)
    return names[index] if len(names) > index else "?"


def _number(message: str, default: int = 0) -> int:
    found = re.search(r"(\d+)", message)
    return int(found.group(1)) if found else default


def _where(issue: Mapping[str, Any]) -> str:
    function = issue.get("function")
    return f"'{function}' (line {issue.get('line')})" if function else f"line {issue.get('line')}"


def _long(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    lines = _number(str(issue.get("message", "")))
    return (
        f"Split '{issue.get('function')}' ({lines} lines) into functions of at most "
        f"{MAX_FUNCTION_LINES} lines: move each loop body or branch that does one job into a "
        "named helper, and keep this function as the short sequence of steps."
    )


def _arguments(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    count = _number(str(issue.get("message", "")))
    return (
        f"'{issue.get('function')}' takes {count} arguments (limit {MAX_ARGUMENTS}): group the "
        "ones that travel together into a dataclass, and make optional ones keyword-only."
    )


def _nesting(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    depth = _number(str(issue.get("message", "")))
    return (
        f"Flatten {_where(issue)}, nested {depth} levels deep: invert conditions into guard "
        "clauses ('if not ok: continue' / 'return') and move the innermost block into a "
        "helper function."
    )


def _docstring(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    return (
        f"Add a docstring to '{issue.get('function')}' (line {issue.get('line')}) that says "
        "what it returns and what each argument means."
    )


def _module_docstring(_issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    return "Open the module with a docstring that says what it is for and what it provides."


def _bare_except(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    return (
        f"At {_where(issue)}, catch the exceptions you expect (e.g. "
        "'except (OSError, ValueError):'), or at least 'except Exception:', so Ctrl-C and "
        "sys.exit() are not swallowed; re-raising handlers can use 'except BaseException:'."
    )


def _mutable_default(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    message = str(issue.get("message", ""))
    param = _quoted(message)
    kind = re.search(r"mutable (\w+)", message)
    kind_name = kind.group(1) if kind else "object"
    empty = _EMPTY.get(kind_name, f"{kind_name}()")
    return (
        f"Default '{param}' of '{issue.get('function')}' to None and create a fresh {kind_name} "
        f"in the body: 'if {param} is None: {param} = {empty}'."
    )


def _complexity(issue: Mapping[str, Any], cc: Mapping[str, int]) -> str:
    function = str(issue.get("function"))
    value = cc.get(function, _number(str(issue.get("message", ""))))
    return (
        f"Bring the cyclomatic complexity of '{function}' from {value} down to "
        f"{MAX_COMPLEXITY} or less: replace if/elif chains with a lookup table, return early, "
        "and extract independent branches into helpers."
    )


def _unused_import(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    name = _quoted(str(issue.get("message", "")))
    return f"Delete the unused import of '{name}' on line {issue.get('line')}."


def _unused_variable(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    name = _quoted(str(issue.get("message", "")))
    return (
        f"Remove the assignment to '{name}' at {_where(issue)} (keep the right-hand side if it "
        "has side effects), or name it '_' if the value is deliberately ignored."
    )


def _undefined(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    name = _quoted(str(issue.get("message", "")))
    return (
        f"'{name}' is not defined at {_where(issue)}: import or define it, or fix the "
        "spelling; as written this line raises NameError."
    )


def _generic(issue: Mapping[str, Any], _cc: Mapping[str, int]) -> str:
    return f"Fix at {_where(issue)}: {issue.get('message', issue.get('kind'))}."


SUGGESTERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, int]], str]] = {
    "long_function": _long,
    "too_many_arguments": _arguments,
    "deep_nesting": _nesting,
    "missing_docstring": _docstring,
    "missing_module_docstring": _module_docstring,
    "bare_except": _bare_except,
    "mutable_default": _mutable_default,
    "high_complexity": _complexity,
    "unused_import": _unused_import,
    "unused_variable": _unused_variable,
    "undefined_name": _undefined,
}


def suggest(issues: list[Mapping[str, Any]], cc: Mapping[str, int]) -> list[dict[str, Any]]:
    """A suggestion for each issue, in the issues' order."""
    return [
        {
            "kind": issue.get("kind"),
            "line": issue.get("line"),
            "function": issue.get("function"),
            "suggestion": SUGGESTERS.get(str(issue.get("kind")), _generic)(issue, cc),
        }
        for issue in issues
    ]
