"""What the code review measures: functions, cyclomatic complexity (radon) and issues.

Issues come from the AST (size, arguments, nesting, docstrings, ``except:``, mutable
defaults), from pyflakes (unused imports and locals, undefined names...) and from radon
(complexity). Each is a dict ``{kind, line, function, message, severity}``; ``function`` is
the qualname of the innermost enclosing function, or ``None`` at module level.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyflakes import checker as pyflakes_checker
from radon.complexity import cc_visit_ast

from engine.ast_lock import AST_LOCK
from engine.toolkits.code_review.source import FunctionNode, has_docstring, iter_functions

MAX_FUNCTION_LINES = 40
MAX_ARGUMENTS = 5
MAX_NESTING = 3
MAX_COMPLEXITY = 10
VERY_HIGH_COMPLEXITY = 20

SEVERITY: dict[str, str] = {
    "bare_except": "high",
    "mutable_default": "high",
    "undefined_name": "high",
    "long_function": "medium",
    "too_many_arguments": "medium",
    "deep_nesting": "medium",
    "high_complexity": "medium",
    "missing_docstring": "low",
    "missing_module_docstring": "low",
    "unused_import": "low",
    "unused_variable": "low",
}
# pyflakes messages not named here get a kind derived from their class name, severity medium.
PYFLAKES_KINDS: dict[str, str] = {
    "UnusedImport": "unused_import",
    "UnusedVariable": "unused_variable",
    "UnusedAnnotation": "unused_variable",
    "UndefinedName": "undefined_name",
    "UndefinedLocal": "undefined_name",
    "UndefinedExport": "undefined_name",
}
NESTING_NODES = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Try,
    ast.TryStar,
    ast.With,
    ast.AsyncWith,
)
MUTABLE_CALLS = frozenset(
    {"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "deque", "Counter"}
)


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    node: FunctionNode
    qualname: str
    is_method: bool

    @property
    def length(self) -> int:
        return (self.node.end_lineno or self.node.lineno) - self.node.lineno + 1

    @property
    def arg_count(self) -> int:
        """Parameters, ``*args`` and ``**kwargs`` included, a method's ``self``/``cls`` not."""
        a = self.node.args
        named = [*a.posonlyargs, *a.args]
        if self.is_method and named and named[0].arg in ("self", "cls") and not self.is_static:
            named = named[1:]
        return len(named) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)

    @property
    def is_static(self) -> bool:
        return any(
            isinstance(d, ast.Name) and d.id == "staticmethod" for d in self.node.decorator_list
        )

    def describe(self) -> dict[str, Any]:
        node = self.node
        return {
            "name": node.name,
            "qualname": self.qualname,
            "lineno": node.lineno,
            "end_lineno": node.end_lineno,
            "args": self.arg_count,
            "length": self.length,
            "has_docstring": has_docstring(node),
            "is_method": self.is_method,
        }


def functions_of(tree: ast.Module) -> list[FunctionInfo]:
    return [FunctionInfo(node, q, m) for node, q, m in iter_functions(tree)]


def complexity_of(function: FunctionNode) -> int:
    """Radon's cyclomatic complexity of one function (its nested functions not counted)."""
    blocks = cc_visit_ast(function)
    return int(blocks[0].complexity) if blocks else 1


def complexities(functions: list[FunctionInfo]) -> dict[str, int]:
    """``{qualname: complexity}``; a qualname defined twice keeps its worst."""
    result: dict[str, int] = {}
    for info in functions:
        cc = complexity_of(info.node)
        result[info.qualname] = max(cc, result.get(info.qualname, 0))
    return result


# --- nesting -------------------------------------------------------------------------------


def _is_elif(parent: ast.If) -> bool:
    """``elif`` is an ``If`` alone in ``orelse`` and starting in the parent's column."""
    orelse = parent.orelse
    return (
        len(orelse) == 1
        and isinstance(orelse[0], ast.If)
        and (orelse[0].col_offset == parent.col_offset)
    )


def _child_blocks(node: ast.stmt) -> Iterator[list[ast.stmt]]:
    if isinstance(node, ast.If):
        yield node.body
        if not _is_elif(node):
            yield node.orelse
    elif isinstance(node, ast.Try | ast.TryStar):
        yield node.body
        for handler in node.handlers:
            yield handler.body
        yield node.orelse
        yield node.finalbody
    elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
        yield node.body
        yield node.orelse
    elif isinstance(node, ast.With | ast.AsyncWith):
        yield node.body


def nesting_levels(body: list[ast.stmt], depth: int = 0) -> Iterator[tuple[ast.stmt, int]]:
    """Each if/for/while/try/with statement of ``body`` with its nesting level (1 = outermost).

    Nested function and class bodies are not entered: they are measured on their own.
    An ``elif`` is at the level of its ``if``.
    """
    for stmt in body:
        if not isinstance(stmt, NESTING_NODES):
            continue
        level = depth + 1
        yield stmt, level
        for block in _child_blocks(stmt):
            yield from nesting_levels(block, level)
        if isinstance(stmt, ast.If) and _is_elif(stmt):
            yield from nesting_levels(stmt.orelse, depth)


def max_nesting(body: list[ast.stmt]) -> tuple[int, int | None]:
    """Deepest level in ``body``, and the line of the first statement above the limit."""
    deepest, first_line = 0, None
    for stmt, level in nesting_levels(body):
        deepest = max(deepest, level)
        if level > MAX_NESTING and first_line is None:
            first_line = stmt.lineno
    return deepest, first_line


# --- issues --------------------------------------------------------------------------------


def issue(kind: str, line: int, function: str | None, message: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "line": line,
        "function": function,
        "message": message,
        "severity": SEVERITY.get(kind, "medium"),
    }


def mutable_default_kind(default: ast.expr) -> str | None:
    """``list``/``dict``/``set``/... when a default value is a fresh mutable object."""
    literal = {
        ast.List: "list",
        ast.ListComp: "list",
        ast.Dict: "dict",
        ast.DictComp: "dict",
        ast.Set: "set",
        ast.SetComp: "set",
    }
    for node_type, kind in literal.items():
        if isinstance(default, node_type):
            return kind
    if isinstance(default, ast.Call):
        func = default.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in MUTABLE_CALLS:
            return str(name)
    return None


def mutable_defaults(node: FunctionNode) -> list[tuple[ast.arg, ast.expr, str]]:
    """``(parameter, default, kind)`` for each parameter defaulting to a mutable object."""
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
    pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d]
    found = []
    for arg, default in pairs:
        kind = mutable_default_kind(default)
        if kind is not None:
            found.append((arg, default, kind))
    return found


def _function_issues(info: FunctionInfo, cc: int) -> Iterator[dict[str, Any]]:
    node, name = info.node, info.qualname
    line = node.lineno
    if info.length > MAX_FUNCTION_LINES:
        yield issue(
            "long_function",
            line,
            name,
            f"'{name}' is {info.length} lines long (limit {MAX_FUNCTION_LINES})",
        )
    if info.arg_count > MAX_ARGUMENTS:
        yield issue(
            "too_many_arguments",
            line,
            name,
            f"'{name}' takes {info.arg_count} arguments (limit {MAX_ARGUMENTS})",
        )
    deepest, deep_line = max_nesting(node.body)
    if deep_line is not None:
        yield issue(
            "deep_nesting",
            deep_line,
            name,
            f"'{name}' nests blocks {deepest} levels deep (limit {MAX_NESTING})",
        )
    if not has_docstring(node):
        yield issue("missing_docstring", line, name, f"'{name}' has no docstring")
    for arg, default, kind in mutable_defaults(node):
        yield issue(
            "mutable_default",
            default.lineno,
            name,
            f"parameter '{arg.arg}' of '{name}' defaults to a mutable {kind}, "
            "which every call shares",
        )
    if cc > MAX_COMPLEXITY:
        found = issue(
            "high_complexity",
            line,
            name,
            f"'{name}' has cyclomatic complexity {cc} (limit {MAX_COMPLEXITY})",
        )
        if cc > VERY_HIGH_COMPLEXITY:
            found["severity"] = "high"
        yield found


def _enclosing(functions: list[FunctionInfo]) -> dict[int, str]:
    """Line -> qualname of the innermost function covering it (inner ones are listed later)."""
    owner: dict[int, str] = {}
    for info in functions:
        for line in range(info.node.lineno, (info.node.end_lineno or info.node.lineno) + 1):
            owner[line] = info.qualname
    return owner


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Checker(pyflakes_checker.Checker):  # type: ignore[misc]  # pyflakes has no types
    """pyflakes' checker, holding AST_LOCK only while it parses a string annotation
    (``x: "list[int]"``), the one AST it builds itself: the walk of the tree, which is
    most of its time, runs unlocked."""

    def handleStringAnnotation(self, *args: Any) -> None:  # pyflakes calls it by this name
        with AST_LOCK:
            super().handleStringAnnotation(*args)


def pyflakes_messages(tree: ast.Module) -> list[Any]:
    """pyflakes' findings on the tree, in line order."""
    found = _Checker(tree, filename="<code>", withDoctest=False)
    return sorted(found.messages, key=lambda m: (m.lineno, m.col))


def _pyflakes_issues(tree: ast.Module, owner: dict[int, str]) -> Iterator[dict[str, Any]]:
    for message in pyflakes_messages(tree):
        name = type(message).__name__
        kind = PYFLAKES_KINDS.get(name, _snake(name))
        text = message.message % message.message_args
        yield issue(kind, message.lineno, owner.get(message.lineno), text)


def _module_issues(tree: ast.Module, owner: dict[int, str]) -> Iterator[dict[str, Any]]:
    if tree.body and not has_docstring(tree):
        yield issue("missing_module_docstring", 1, None, "the module has no docstring")
    outside = [s for s in tree.body if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    deepest, deep_line = max_nesting(outside)
    if deep_line is not None:
        yield issue(
            "deep_nesting",
            deep_line,
            None,
            f"module-level code nests blocks {deepest} levels deep (limit {MAX_NESTING})",
        )
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is None:
            yield issue(
                "bare_except",
                node.lineno,
                owner.get(node.lineno),
                "bare 'except:' also catches KeyboardInterrupt and SystemExit",
            )


def detect(tree: ast.Module) -> list[dict[str, Any]]:
    """Every issue in the module, ordered by line."""
    functions = functions_of(tree)
    owner = _enclosing(functions)
    found = [
        *_module_issues(tree, owner),
        *(i for info in functions for i in _function_issues(info, complexity_of(info.node))),
        *_pyflakes_issues(tree, owner),
    ]
    return sorted(found, key=lambda i: (i["line"], i["kind"], i["function"] or ""))
