"""Fixes for what pyflakes finds unused: imports, and local names nobody reads.

Removal works on text spans: one alias of ``from x import a, b``, the `` as e`` of a
handler, a whole statement's lines. A block that would end up empty gets ``pass``.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict

from engine.toolkits.code_review.analysis import pyflakes_messages
from engine.toolkits.code_review.editing import Edit
from engine.toolkits.code_review.source import Document

PassResult = tuple[list[Edit], list[tuple[int, str]]]
_PURE_LEAVES = (ast.Constant, ast.Name, ast.Lambda, ast.Attribute)


def is_pure(node: ast.expr) -> bool:
    """Evaluating ``node`` has no effect worth keeping: no calls, subscripts, awaits..."""
    if isinstance(node, _PURE_LEAVES):
        return not isinstance(node, ast.Attribute) or is_pure(node.value)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(is_pure(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(is_pure(k) for k in node.keys if k is not None) and all(
            is_pure(v) for v in node.values
        )
    if isinstance(node, ast.UnaryOp):
        return is_pure(node.operand)
    if isinstance(node, ast.BinOp):
        return is_pure(node.left) and is_pure(node.right)
    if isinstance(node, ast.BoolOp):
        return all(is_pure(v) for v in node.values)
    if isinstance(node, ast.Compare):
        return is_pure(node.left) and all(is_pure(c) for c in node.comparators)
    if isinstance(node, ast.JoinedStr):
        return all(
            is_pure(v.value) if isinstance(v, ast.FormattedValue) else True for v in node.values
        )
    return False


class _Deletions:
    """Statements to delete, turned into edits once all are known (so no block empties)."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.parents = doc.parents()
        self.by_block: dict[int, tuple[list[ast.stmt], list[ast.stmt]]] = {}

    def block_of(self, stmt: ast.stmt) -> list[ast.stmt] | None:
        parent = self.parents.get(stmt)
        for _field, value in ast.iter_fields(parent) if parent is not None else ():
            if isinstance(value, list) and any(v is stmt for v in value):
                return value
        return None

    def add(self, stmt: ast.stmt) -> bool:
        """Schedule ``stmt`` for deletion; ``False`` if it shares a line with other code."""
        doc = self.doc
        block = self.block_of(stmt)
        rest = doc.rest_of_line(stmt).strip()
        if block is None or not doc.starts_line(stmt) or (rest and not rest.startswith("#")):
            return False
        self.by_block.setdefault(id(block), (block, []))[1].append(stmt)
        return True

    def edits(self) -> list[Edit]:
        doc = self.doc
        edits = []
        for block, doomed in self.by_block.values():
            keep_one = len(doomed) == len(block)
            for stmt in doomed:
                if keep_one:  # the block's last statement: a block cannot be empty
                    edits.append(Edit(doc.start(stmt), doc.end(stmt), "pass"))
                    keep_one = False
                    continue
                start = doc.line_starts[stmt.lineno - 1]
                end_line = stmt.end_lineno or stmt.lineno
                comment = doc.rest_of_line(stmt).strip()
                if comment:  # keep a trailing comment on a line of its own
                    edits.append(
                        Edit(
                            start,
                            doc.line_end(end_line),
                            doc.indent_of(doc.line(stmt.lineno)) + comment,
                        )
                    )
                else:
                    edits.append(Edit(start, doc.line_starts[end_line], ""))
        return edits


# --- imports -------------------------------------------------------------------------------


def _import_repr(stmt: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    """How pyflakes names an import in "'X' imported but unused"."""
    if isinstance(stmt, ast.ImportFrom):
        module = "." * stmt.level + (stmt.module or "")
        full = module + alias.name if module.endswith(".") else f"{module}.{alias.name}"
    else:
        full = alias.name
    if alias.asname and full.split(".")[-1] != alias.asname:
        return f"{full} as {alias.asname}"
    return full


def _alias_edits(doc: Document, names: list[ast.alias], dead: set[int]) -> list[Edit]:
    """Cut dead aliases out of a statement that keeps at least one."""
    last_kept = max(i for i in range(len(names)) if i not in dead)
    edits = [
        Edit(doc.start(names[i]), doc.start(names[i + 1]), "")
        for i in sorted(dead)
        if i < last_kept
    ]
    if last_kept == len(names) - 1:
        return edits
    kept, tail_first, tail_last = names[last_kept], names[last_kept + 1], names[-1]
    after_tail = doc.rest_of_line(tail_last).strip().lstrip(",").strip()
    kept_end = kept.end_lineno or kept.lineno
    if kept_end < tail_first.lineno and (not after_tail or after_tail.startswith("#")):
        # One alias per line: drop the dead tail's lines, keep the kept alias's comment.
        edits.append(Edit(doc.line_end(kept_end), doc.line_end(tail_last.end_lineno or 0), ""))
    else:  # a dead tail on the kept alias's line: cut from the kept alias's end
        edits.append(Edit(doc.end(kept), doc.end(tail_last), ""))
    return edits


def _bound_name(stmt: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0] if isinstance(stmt, ast.Import) else alias.name


def _dead_imports(doc: Document) -> dict[int, set[str]]:
    """Line -> import names pyflakes finds dead there: unused, or rebound before any use.

    Unused imports are named as pyflakes prints them (``os.path``, ``numpy as np``);
    an import redefined while unused (``import os`` twice) by the name it binds.
    """
    dead: dict[int, set[str]] = defaultdict(set)
    for message in pyflakes_messages(doc.tree):
        kind = type(message).__name__
        if kind == "UnusedImport":
            dead[message.lineno].add(str(message.message_args[0]))
        elif kind == "RedefinedWhileUnused":
            name, original_line = message.message_args
            dead[int(original_line)].add(f"rebound:{name}")
    return dead


def fix_unused_imports(doc: Document) -> PassResult:
    unused = _dead_imports(doc)
    if not unused:
        return [], []
    deletions = _Deletions(doc)
    edits: list[Edit] = []
    fixes: list[tuple[int, str]] = []
    for stmt in ast.walk(doc.tree):
        if not isinstance(stmt, ast.Import | ast.ImportFrom) or stmt.lineno not in unused:
            continue
        if any(a.name == "*" for a in stmt.names):
            continue  # a star import's effect cannot be seen; leave it
        names = unused[stmt.lineno]
        dead = {
            i
            for i, a in enumerate(stmt.names)
            if _import_repr(stmt, a) in names or f"rebound:{_bound_name(stmt, a)}" in names
        }
        if not dead:
            continue
        if len(dead) < len(stmt.names):
            edits += _alias_edits(doc, stmt.names, dead)
        elif not deletions.add(stmt):
            continue
        for i in sorted(dead):
            fixes.append(
                (stmt.lineno, f"removed unused import '{_import_repr(stmt, stmt.names[i])}'")
            )
    return edits + deletions.edits(), fixes


# --- unused locals -------------------------------------------------------------------------


def _drop_as_clause(doc: Document, after: ast.expr, name: str) -> Edit | None:
    """Edit removing `` as name`` that follows ``after`` (closing brackets may sit between)."""
    found = re.compile(r"\s*as\s+" + re.escape(name) + r"\b").search(doc.text, doc.end(after))
    if found is None or doc.text[doc.end(after) : found.start()].strip(") \t\r\n\\"):
        return None
    return Edit(found.start(), found.end(), "")


def _drop_target(doc: Document, stmt: ast.Assign | ast.AnnAssign) -> Edit | None:
    """Edit turning ``x = f()`` / ``x: T = f()`` into ``f()``."""
    assert stmt.value is not None
    anchor = stmt.annotation if isinstance(stmt, ast.AnnAssign) else stmt.targets[0]
    equals = re.compile(r"\s*=\s*").match(doc.text, doc.end(anchor))
    if equals is None:
        return None
    return Edit(doc.start(stmt), equals.end(), "")


def _unused_local(
    doc: Document, node: ast.AST, parent: ast.AST | None, name: str, deletions: _Deletions
) -> tuple[list[Edit], str] | None:
    """Edits (and a description) removing one unused local binding, or ``None`` if unsafe."""
    if isinstance(node, ast.ExceptHandler):
        if node.type is None:
            return None
        edit = _drop_as_clause(doc, node.type, name)
        return ([edit], f"dropped the unused exception name '{name}'") if edit else None
    if isinstance(parent, ast.withitem):
        edit = _drop_as_clause(doc, parent.context_expr, name)
        return ([edit], f"dropped the unused 'as {name}' of a with statement") if edit else None
    if isinstance(parent, ast.Tuple | ast.List | ast.Starred):
        return [Edit(doc.start(node), doc.end(node), "_")], f"renamed unused '{name}' to '_'"
    single = isinstance(parent, ast.Assign) and len(parent.targets) == 1
    if not (single or isinstance(parent, ast.AnnAssign)) or parent is None:
        return None
    assert isinstance(parent, ast.Assign | ast.AnnAssign)
    if parent.value is None or is_pure(parent.value):
        return ([], f"removed unused local '{name}'") if deletions.add(parent) else None
    edit = _drop_target(doc, parent)
    return ([edit], f"kept the call but dropped unused local '{name}'") if edit else None


def fix_unused_variables(doc: Document) -> PassResult:
    kinds = ("UnusedVariable", "UnusedAnnotation")
    messages = [m for m in pyflakes_messages(doc.tree) if type(m).__name__ in kinds]
    if not messages:
        return [], []
    parents = doc.parents()
    bindings: dict[tuple[int, int, str], ast.AST] = {}
    for node in ast.walk(doc.tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bindings[(node.lineno, node.col_offset, node.id)] = node
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bindings[(node.lineno, node.col_offset, node.name)] = node
    deletions = _Deletions(doc)
    edits: list[Edit] = []
    fixes: list[tuple[int, str]] = []
    for message in messages:
        name = str(message.message_args[0])
        binding = bindings.get((message.lineno, message.col, name))
        if binding is None:
            continue
        result = _unused_local(doc, binding, parents.get(binding), name, deletions)
        if result is not None:
            edits += result[0]
            fixes.append((message.lineno, result[1]))
    return edits + deletions.edits(), fixes
