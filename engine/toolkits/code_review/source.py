"""Reading the ``code`` out of a state, parsing it, and mapping AST positions to text.

Every tool that reads ``code`` goes through :func:`parse_state_code`, so unparseable code fails
the step with one clear error instead of a made-up result, and code longer than
:data:`MAX_CODE_CHARS` fails it before any work starts.
"""

from __future__ import annotations

import ast
import io
import tokenize
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from engine.ast_lock import AST_LOCK

MAX_CODE_CHARS = 100_000
"""Longest ``code`` the tools review (about 100 KB): analysis grows faster than the code
(``improve_code`` takes seconds at this size), and a step must end well within its
function's timeout."""


class CodeReviewError(ValueError):
    """The state does not hold reviewable code."""


class CodeSyntaxError(CodeReviewError):
    """``code`` is not valid Python: the message says where and why."""

    def __init__(self, lineno: int | None, reason: str) -> None:
        self.lineno = lineno
        self.reason = reason
        where = f"line {lineno}: " if lineno else ""
        super().__init__(f"code does not parse: {where}{reason}")


def parse(code: str) -> ast.Module:
    """Parse ``code`` or raise :class:`CodeSyntaxError`.

    Holds :data:`AST_LOCK` for the parse alone: one file at a time, never a whole analysis,
    so a long review does not stall the conditions and tools of other runs."""
    try:
        with AST_LOCK:
            return ast.parse(code)
    except SyntaxError as exc:
        raise CodeSyntaxError(exc.lineno, exc.msg) from exc
    except ValueError as exc:  # e.g. null bytes, on some Python versions
        raise CodeSyntaxError(None, str(exc)) from exc


def state_code(state: Mapping[str, Any]) -> str:
    """The ``code`` of a state, checked to be a string."""
    code = state.get("code")
    if not isinstance(code, str):
        got = "nothing" if code is None else type(code).__name__
        raise CodeReviewError(f"state['code'] must be a string of Python source, got {got}")
    if len(code) > MAX_CODE_CHARS:
        raise CodeReviewError(
            f"state['code'] is {len(code):,} characters long; the code-review tools read at "
            f"most {MAX_CODE_CHARS:,} (review a large file in parts)"
        )
    return code


def parse_state_code(state: Mapping[str, Any]) -> tuple[str, ast.Module]:
    """The ``code`` of a state and its AST."""
    code = state_code(state)
    return code, parse(code)


FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


class Document:
    """Source text with its AST, and conversions from AST positions to text offsets.

    AST columns count UTF-8 bytes; text offsets count characters. Lines are split the way
    the tokenizer splits them (``\\n``, ``\\r\\n``, ``\\r``), not the way ``str.splitlines``
    does, so AST line numbers index :attr:`lines` directly.
    """

    def __init__(self, text: str, tree: ast.Module | None = None) -> None:
        self.text = text
        self.tree = tree if tree is not None else parse(text)
        self.lines = io.StringIO(text, newline="").readlines()
        starts = [0]
        for line in self.lines:
            starts.append(starts[-1] + len(line))
        self.line_starts = starts

    def line(self, lineno: int) -> str:
        return self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""

    def char_col(self, lineno: int, byte_col: int) -> int:
        return len(self.line(lineno).encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def offset(self, lineno: int, byte_col: int) -> int:
        """Text offset of an AST position (1-based line, byte column)."""
        return self.line_starts[lineno - 1] + self.char_col(lineno, byte_col)

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)]

    def line_end(self, lineno: int) -> int:
        """Offset of the line break ending ``lineno`` (or of the end of the text)."""
        line = self.line(lineno)
        return self.line_starts[lineno - 1] + len(line.rstrip("\r\n"))

    @cached_property
    def newline(self) -> str:
        """The file's line break, for lines the fixer writes."""
        for line in self.lines:
            stripped = line.rstrip("\r\n")
            if stripped != line:
                return line[len(stripped) :]
        return "\n"

    def starts_line(self, node: ast.AST) -> bool:
        """Nothing but indentation precedes ``node`` on its first line."""
        start = self.start(node)
        return not self.text[self.line_starts[node.lineno - 1] : start].strip()  # type: ignore[attr-defined]

    def rest_of_line(self, node: ast.AST) -> str:
        """What follows ``node`` on its last line (without the line break)."""
        return self.text[self.end(node) : self.line_end(node.end_lineno)]  # type: ignore[attr-defined]

    @staticmethod
    def indent_of(line: str) -> str:
        return line[: len(line) - len(line.lstrip(" \t"))]

    @cached_property
    def tokens(self) -> list[tokenize.TokenInfo]:
        """The tokens, or as many as the tokenizer produced before giving up."""
        found: list[tokenize.TokenInfo] = []
        try:
            found.extend(tokenize.generate_tokens(io.StringIO(self.text, newline="").readline))
        except (tokenize.TokenError, SyntaxError):
            self.tokens_complete = False
        return found

    tokens_complete = True

    @cached_property
    def token_starts(self) -> list[tuple[int, int]]:
        return [tok.start for tok in self.tokens]

    @cached_property
    def string_continuation_lines(self) -> frozenset[int]:
        """Lines that continue a multi-line string: their indentation is string content.

        If the tokenizer gave up, every line counts, so nothing gets re-indented.
        """
        lines: set[int] = set()
        tokens = self.tokens
        if not self.tokens_complete:
            return frozenset(range(1, len(self.lines) + 1))
        for tok in tokens:
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                lines.update(range(tok.start[0] + 1, tok.end[0] + 1))
        return frozenset(lines)

    def header_colon_line(self, node: ast.stmt, after: ast.AST | None = None) -> int | None:
        """Line of the ``:`` that ends a compound statement's header.

        The first ``:`` outside brackets at or after ``after``'s end (or the statement's own
        start) is the header's: lambdas, annotations and slices all sit inside brackets.
        """
        if after is not None:
            row, col = getattr(after, "end_lineno", 0), getattr(after, "end_col_offset", 0)
        else:
            row, col = node.lineno, node.col_offset
        start = (row, self.char_col(row, col))
        depth = 0
        tokens = self.tokens
        for tok in tokens[bisect_left(self.token_starts, start) :]:
            if tok.type != tokenize.OP:
                continue
            if tok.string in "([{":
                depth += 1
            elif tok.string in ")]}":
                depth -= 1
            elif tok.string == ":" and depth <= 0:
                return tok.start[0]
        return None

    def parents(self) -> dict[ast.AST, ast.AST]:
        return {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}


def iter_functions(tree: ast.AST) -> Iterator[tuple[FunctionNode, str, bool]]:
    """Every function and method, with its dotted qualname and whether it is a method.

    Qualnames read like ``__qualname__`` without ``<locals>``: ``Cls.method``,
    ``outer.inner``. Functions inside ``if``/``try`` blocks are found too.
    """

    def walk(
        node: ast.AST, prefix: str, in_class: bool
    ) -> Iterator[tuple[FunctionNode, str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                yield child, qualname, in_class
                yield from walk(child, f"{qualname}.", False)
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.", True)
            elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                yield from walk(child, prefix, in_class)

    yield from walk(tree, "", False)


def first_line(node: ast.stmt) -> int:
    """First line of a statement, decorators included."""
    decorators: list[ast.expr] = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(d.lineno for d in decorators)])


def has_docstring(node: FunctionNode | ast.Module) -> bool:
    return ast.get_docstring(node, clean=False) is not None
