"""Guard clauses: the fixer's cure for deep nesting.

When the last statement of a loop body (or of a function body) is an ``if`` without
``else``, falling off its end and skipping it are the same thing, so

    for item in items:                      for item in items:
        if item.ready:                          if not item.ready:
            <body>                                  continue
                                                <body>

does exactly what it did before, one level flatter (``return`` plays ``continue``'s part at
the end of a function: both return ``None``). One rewrite per call, on the outermost such
``if`` on the path to the deepest block of a too-deeply-nested function; the fixer calls
again until nothing is left to flatten.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from engine.toolkits.code_review.analysis import functions_of, max_nesting, nesting_levels
from engine.toolkits.code_review.editing import Edit
from engine.toolkits.code_review.source import Document, FunctionNode

PassResult = tuple[list[Edit], list[tuple[int, str]]]
_COMPLEMENT = {
    "==": "!=",
    "!=": "==",
    "in": "not in",
    "not in": "in",
    "is": "is not",
    "is not": "is",
}
_OPERATOR = re.compile(r"(\s*\)*\s*)(==|!=|not\s+in|in|is\s+not|is)(\s*\(*\s*)")
_ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)


def negate(doc: Document, test: ast.expr) -> str:
    """Source for ``not <test>``, written the way a person would write it."""
    text = doc.segment(test)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return text[len("not") :].strip()
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left_end, right_start = doc.end(test.left), doc.start(test.comparators[0])
        found = _OPERATOR.fullmatch(doc.text[left_end:right_start])
        if found:
            operator = " ".join(found.group(2).split())
            return (
                doc.text[doc.start(test) : left_end]
                + found.group(1)
                + _COMPLEMENT[operator]
                + found.group(3)
                + doc.text[right_start : doc.end(test)]
            )
    if isinstance(test, _ATOMS):
        return f"not {text}"
    return f"not ({text})"


def _containers(node: FunctionNode) -> Iterator[tuple[list[ast.stmt], str]]:
    """Bodies whose end an ``if`` can leave early from, and the statement that leaves."""
    yield node.body, "return"
    for stmt, _level in nesting_levels(node.body):
        if isinstance(stmt, ast.For | ast.AsyncFor | ast.While):
            yield stmt.body, "continue"


def _candidate(node: FunctionNode, deepest: int) -> tuple[ast.If, str] | None:
    """The outermost trailing ``if`` whose body holds blocks reaching the deepest level."""
    levels = {id(stmt): level for stmt, level in nesting_levels(node.body)}
    best: tuple[int, ast.If, str] | None = None
    for body, exit_statement in _containers(node):
        last = body[-1]
        if not isinstance(last, ast.If) or last.orelse:
            continue
        level = levels[id(last)]
        inner = max((lv for _s, lv in nesting_levels(last.body, level)), default=level)
        # A body without blocks gains nothing: the guard ``if`` would sit just as deep.
        if level < inner == deepest and (best is None or level < best[0]):
            best = (level, last, exit_statement)
    return (best[1], best[2]) if best else None


def _guard_edits(doc: Document, stmt: ast.If, exit_statement: str) -> list[Edit] | None:
    colon = doc.header_colon_line(stmt, after=stmt.test)
    first = stmt.body[0].lineno
    last = stmt.end_lineno or stmt.lineno
    if colon is None or first <= colon:
        return None  # ``if x: y`` on one line
    outer = doc.indent_of(doc.line(stmt.lineno))
    inner = doc.indent_of(doc.line(first))
    shift = len(inner) - len(outer)
    span = range(colon + 1, last + 1)
    if "\t" in inner or shift <= 0 or any(n in doc.string_continuation_lines for n in span):
        return None  # tabs or multi-line strings: dedenting could change meaning
    edits = [
        Edit(doc.start(stmt.test), doc.end(stmt.test), negate(doc, stmt.test)),
        Edit(doc.line_end(colon), doc.line_end(colon), f"{doc.newline}{inner}{exit_statement}"),
    ]
    for lineno in span:
        line = doc.line(lineno)
        if not line.strip():
            continue
        leading = doc.indent_of(line)
        if "\t" in leading:
            return None
        cut = min(shift, len(leading))
        start = doc.line_starts[lineno - 1]
        edits.append(Edit(start, start + cut, ""))
    return edits


def flatten_one(doc: Document) -> PassResult:
    """Rewrite one trailing ``if`` of a too-deeply-nested function as a guard clause."""
    for info in functions_of(doc.tree):
        deepest, deep_line = max_nesting(info.node.body)
        if deep_line is None:
            continue
        found = _candidate(info.node, deepest)
        if found is None:
            continue
        stmt, exit_statement = found
        edits = _guard_edits(doc, stmt, exit_statement)
        if edits:
            condition = doc.segment(stmt.test)
            return edits, [
                (
                    stmt.lineno,
                    f"flattened '{info.qualname}': 'if {condition}:' became a guard clause "
                    f"that does '{exit_statement}' early",
                )
            ]
    return [], []
