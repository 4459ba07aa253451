"""The one rule for JSON that clients send, applied at every entry point.

Every JSON document that comes from a client (an HTTP body, a run-requests queue message, a
WebSocket message) and every value the engine is handed as a run's input is refused at the
door, as an :class:`~engine.errors.InvalidInputError`, if it

- nests deeper than :data:`MAX_DEPTH` objects and arrays, or
- holds a string or an object key that is not valid Unicode (a lone UTF-16 surrogate such as
  ``"\\ud800"``, which JSON's ``\\u`` escapes can spell but UTF-8 cannot encode).

Why refuse rather than store: both kinds are accepted by Python's parser, then break later,
far from the request (a 256-deep state exceeds the serializer's recursion limit when the run
is read back; a lone surrogate cannot be written as UTF-8 to a log, a WebSocket frame or a
DynamoDB string). A client is better served by a 422 that says where than by a run it can
start but never read. 64 levels is far beyond any state a graph's tools work on.

Hand-written because neither parser offers it: ``json`` has no depth limit (it raises
``RecursionError`` near 1,000 levels, which :func:`loads` turns into this rule's error) and
orjson's is fixed at 1,024 and its surrogate check cannot be told apart from other errors.
The walk is iterative, so the check itself cannot recurse too deep.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeAlias

from engine.errors import InvalidJsonError, JsonRuleError

MAX_DEPTH = 64
"""Objects and arrays may nest this deep (``{"a": {}}`` is 2 levels)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
"""After parsing, a valid surrogate pair is one character; any surrogate left is lone."""

Path: TypeAlias = tuple[str | int, ...]
_Link: TypeAlias = "tuple[_Link | None, str | int]"
"""A value's place: its parent's link and its key or index in that parent."""


def loads(text: str | bytes, root: Path = ()) -> Any:
    """Parse a client's JSON document and check it (:func:`check`).

    Raises InvalidJsonError if ``text`` is not JSON, JsonRuleError if it breaks the rule
    (including a nesting so deep that the parser itself gives up)."""
    try:
        doc = parse(text, root)
    except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise InvalidJsonError(f"not valid JSON: {exc}") from None
    check(doc, root)
    return doc


def parse(text: str | bytes, root: Path = ()) -> Any:
    """``json.loads``, except that a document too deep for the parser is this rule's
    JsonRuleError rather than a RecursionError. Text that is not JSON raises ValueError as
    ``json.loads`` does (callers that report the position keep it)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonRuleError(root, _too_deep()) from None


def check(value: Any, root: Path = ()) -> None:
    """Raise JsonRuleError, naming the first place found, if ``value`` breaks the rule.

    ``root`` is prefixed to the location (``("body",)``, ``("input",)``)."""
    problem = find_problem(value)
    if problem is not None:
        path, message = problem
        raise JsonRuleError(root + path, message)


def find_problem(value: Any) -> tuple[Path, str] | None:
    """``(where, what)`` of the first rule break in ``value``, or None if it follows it."""
    # Each entry: a value, its depth (containers around it, itself included), and a link to
    # its parent's entry, so a path is built only for the one value that breaks the rule.
    stack: list[tuple[Any, int, _Link | None]] = [(value, 0, None)]
    while stack:
        item, depth, link = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return _path(link), "the string is not valid Unicode (a lone surrogate)"
            continue
        if not isinstance(item, dict | list):
            continue
        depth += 1
        if depth > MAX_DEPTH:
            return _path(link), _too_deep()
        if isinstance(item, list):
            stack.extend((v, depth, (link, i)) for i, v in enumerate(item))
            continue
        for key, v in item.items():
            if isinstance(key, str) and _SURROGATE.search(key):
                return _path((link, key)), "the key is not valid Unicode (a lone surrogate)"
            stack.append((v, depth, (link, key)))
    return None


def _path(link: _Link | None) -> Path:
    parts: list[str | int] = []
    while link is not None:
        link, part = link
        parts.append(_printable(part) if isinstance(part, str) else part)
    return tuple(reversed(parts))


def _printable(key: str) -> str:
    # The location goes back to the client as UTF-8: a lone surrogate in it is escaped.
    return key.encode("utf-8", "backslashreplace").decode() if _SURROGATE.search(key) else key


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels of objects and arrays"
