"""The fixer: AST-guided edits that leave the rest of the source as it was.

Each pass finds one kind of issue in a fresh parse of the current text, computes small text
edits at the AST's positions, and splices them in. The result of every pass must parse (and
compile, if the input compiled); a pass that would break the code is dropped, not applied.
Passes run in an order where one fix can feed the next: dropping an unused local can leave
an import unused, which the import pass then removes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.ast_lock import AST_LOCK
from engine.toolkits.code_review.analysis import mutable_defaults
from engine.toolkits.code_review.cleanup import fix_unused_imports, fix_unused_variables
from engine.toolkits.code_review.docstrings import add_function_docstrings, add_module_docstring
from engine.toolkits.code_review.editing import Edit, EditConflict, apply_edits
from engine.toolkits.code_review.flatten import flatten_one
from engine.toolkits.code_review.source import CodeSyntaxError, Document, iter_functions

PassResult = tuple[list[Edit], list[tuple[int, str]]]
MAX_FLATTENINGS = 25


@dataclass(frozen=True, slots=True)
class Fix:
    kind: str
    line: int
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "line": self.line, "description": self.description}


# --- bare except ---------------------------------------------------------------------------


def _reraises(handler: ast.ExceptHandler) -> bool:
    """The handler ends in a bare ``raise`` somewhere (not inside a nested def or handler)."""
    todo: list[ast.AST] = list(handler.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Raise) and node.exc is None:
            return True
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            todo.extend(
                c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.ExceptHandler)
            )
    return False


def fix_bare_excepts(doc: Document) -> PassResult:
    """``except:`` -> ``except Exception:`` (``BaseException`` when the handler re-raises)."""
    edits: list[Edit] = []
    fixes: list[tuple[int, str]] = []
    keyword = re.compile(r"except\s*:")
    for node in ast.walk(doc.tree):
        if not isinstance(node, ast.ExceptHandler) or node.type is not None:
            continue
        found = keyword.match(doc.text, doc.start(node))
        if found is None:
            continue
        # A handler that re-raises already lets Ctrl-C through; BaseException keeps it exact.
        caught = "BaseException" if _reraises(node) else "Exception"
        edits.append(Edit(found.start(), found.end(), f"except {caught}:"))
        fixes.append((node.lineno, f"replaced bare 'except:' with 'except {caught}:'"))
    return edits, fixes


# --- mutable defaults ----------------------------------------------------------------------


def _guard_insertion(doc: Document, node: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    """Offset where statements go at the top of a body: after the header, or the docstring."""
    colon = doc.header_colon_line(node)
    first = node.body[0]
    if colon is None or first.lineno <= colon:
        return None
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if is_doc and isinstance(first.value.value, str):  # type: ignore[attr-defined]
        rest = doc.rest_of_line(first).strip()
        return doc.line_end(first.end_lineno or first.lineno) if not rest else None
    return doc.line_end(colon)


def fix_mutable_defaults(doc: Document) -> PassResult:
    """``def f(x=[])`` -> ``def f(x=None)`` plus ``if x is None: x = []`` atop the body."""
    edits: list[Edit] = []
    fixes: list[tuple[int, str]] = []
    nl = doc.newline
    for node, qualname, _is_method in iter_functions(doc.tree):
        found = mutable_defaults(node)
        at = _guard_insertion(doc, node) if found else None
        if at is None:
            continue
        def_indent = doc.indent_of(doc.line(node.lineno))
        body_indent = doc.indent_of(doc.line(node.body[0].lineno))
        unit = body_indent[len(def_indent) :] or "    "
        guards = []
        for arg, default, kind in found:
            name = arg.arg
            guards.append(
                f"{nl}{body_indent}if {name} is None:"
                f"{nl}{body_indent}{unit}{name} = {doc.segment(default)}"
            )
            edits.append(Edit(doc.start(default), doc.end(default), "None"))
            annotation = arg.annotation
            if annotation is not None and "None" not in doc.segment(annotation):
                text = doc.segment(annotation)
                quoted = isinstance(annotation, ast.Constant)
                new = f"{text[:-1]} | None{text[-1]}" if quoted else f"{text} | None"
                edits.append(Edit(doc.start(annotation), doc.end(annotation), new))
            fixes.append(
                (
                    default.lineno,
                    f"'{name}' of '{qualname}' now defaults to None; a fresh {kind} is "
                    "built on each call",
                )
            )
        edits.append(Edit(at, at, "".join(guards)))
    return edits, fixes


# --- the passes, in order ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pass:
    kind: str
    run: Callable[[Document], PassResult]
    repeat: int = 1
    also: tuple[str, ...] = ()  # other issue kinds this pass fixes

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset((self.kind, *self.also))


PASSES: tuple[Pass, ...] = (
    Pass("unused_variable", fix_unused_variables),
    Pass("unused_import", fix_unused_imports, also=("redefined_while_unused",)),
    Pass("bare_except", fix_bare_excepts),
    Pass("mutable_default", fix_mutable_defaults),
    Pass("deep_nesting", flatten_one, repeat=MAX_FLATTENINGS),
    Pass("missing_docstring", add_function_docstrings),
    Pass("missing_module_docstring", add_module_docstring),
)
FIXABLE_KINDS = frozenset(k for p in PASSES for k in p.kinds)


def _compiles(text: str) -> bool:
    try:
        with AST_LOCK:  # compiling builds an AST too: hold the lock per call, as parse does
            compile(text, "<code>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _origin(origins: list[int | None], line: int) -> int:
    """The input line a current line came from (the nearest one above, for written lines)."""
    for index in range(min(line, len(origins)) - 1, -1, -1):
        found = origins[index]
        if found is not None:
            return found
    return 1


def improve(code: str, kinds: Iterable[str] | None = None) -> tuple[str, list[Fix]]:
    """Fix what can be fixed safely; return the new code and what was done.

    ``kinds`` limits the fixes to those issue kinds. Raises :class:`CodeSyntaxError` if
    ``code`` does not parse; returns ``code`` unchanged and no fixes if nothing applies.
    """
    wanted = FIXABLE_KINDS if kinds is None else FIXABLE_KINDS & set(kinds)
    doc = Document(code)
    must_compile = _compiles(code)
    origins: list[int | None] = list(range(1, len(doc.lines) + 1))
    fixes: list[Fix] = []
    for step in PASSES:
        if not step.kinds & wanted:
            continue
        for _ in range(step.repeat):
            edits, found = step.run(doc)
            if not edits:
                break
            try:
                text, new_origins = apply_edits(doc.text, doc.lines, origins, edits)
                new_doc = Document(text)
            except (EditConflict, CodeSyntaxError):
                break
            if must_compile and not _compiles(text):
                break
            fixes += [Fix(step.kind, _origin(origins, line), what) for line, what in found]
            doc, origins = new_doc, new_origins
    return doc.text, fixes
