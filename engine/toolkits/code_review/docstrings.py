"""Docstring stubs the fixer writes: one line derived from the function's or module's names."""

from __future__ import annotations

import ast
import re

from engine.toolkits.code_review.editing import Edit
from engine.toolkits.code_review.source import Document, first_line, has_docstring, iter_functions

PassResult = tuple[list[Edit], list[tuple[int, str]]]

_PREDICATES = frozenset({"is", "has", "can", "should", "contains", "needs"})


def words(name: str) -> list[str]:
    """``parseHTTPResponse_fast`` -> ``["parse", "http", "response", "fast"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced)
    return [w for w in spaced.lower().split("_") if w]


def function_summary(name: str, qualname: str, is_method: bool, subject: str = "") -> str:
    """A one-line summary read off the function's name (``load_config`` -> "Load config.").

    A one-word name takes its first parameter as object: ``summarize(orders)`` ->
    "Summarize orders.".
    """
    owner = qualname.split(".")[-2] if is_method and "." in qualname else ""
    if name.startswith("__") and name.endswith("__"):
        if name == "__init__":
            return f"Initialise a new {owner or 'instance'}."
        return f"Implement {name}" + (f" for {owner}." if owner else ".")
    parts = words(name)
    if not parts:
        return "Helper function."
    head, rest = parts[0], " ".join(parts[1:])
    if name == "main":
        return "Run the program."
    if head in _PREDICATES:
        return f"Return whether it {head} {rest}." if rest else f"Return whether it {head}."
    if head == "get":
        return f"Return the {rest}." if rest else "Return the value."
    if head == "to" and rest:
        return f"Convert it to {rest}."
    if not rest and len(subject) > 2:  # "Summarize orders.", not "Summarize x."
        rest = " ".join(words(subject))
    return f"{head.capitalize()} {rest}".rstrip() + "."


def module_summary(tree: ast.Module) -> str:
    """ "Defines load(), save() and Report." from the module's top-level definitions."""
    names = [
        f"{s.name}()" if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) else s.name
        for s in tree.body
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    if not names:
        return "Module-level script."
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"Defines {listed}."


def _subject(node: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> str:
    """The first parameter's name, not counting a method's ``self`` or ``cls``."""
    params = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
    if is_method and params and params[0] in ("self", "cls"):
        params = params[1:]
    return params[0] if params else ""


def add_function_docstrings(doc: Document) -> PassResult:
    """Give each function without a docstring a one-line stub, first in its body."""
    edits: list[Edit] = []
    fixes: list[tuple[int, str]] = []
    nl = doc.newline
    for node, qualname, is_method in iter_functions(doc.tree):
        if has_docstring(node):
            continue
        colon = doc.header_colon_line(node)
        body_line = first_line(node.body[0])
        if colon is None or body_line <= colon:
            continue  # a one-line ``def f(): ...``: leave it alone
        indent = doc.indent_of(doc.line(body_line))
        summary = function_summary(node.name, qualname, is_method, _subject(node, is_method))
        edits.append(Edit(doc.line_end(colon), doc.line_end(colon), f'{nl}{indent}"""{summary}"""'))
        fixes.append((node.lineno, f"added a docstring to '{qualname}': \"{summary}\""))
    return edits, fixes


def add_module_docstring(doc: Document) -> PassResult:
    """Put a one-line module docstring before the first statement (after leading comments)."""
    tree = doc.tree
    if not tree.body or has_docstring(tree):
        return [], []
    summary = module_summary(tree)
    line = first_line(tree.body[0])
    at = doc.line_starts[line - 1]
    nl = doc.newline
    return [Edit(at, at, f'"""{summary}"""{nl}{nl}')], [
        (line, f'added a module docstring: "{summary}"')
    ]
