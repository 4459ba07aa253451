"""What the command line reads from people: files, JSON, and the words of its messages.

Every mistake becomes a :class:`UsageError` whose text names what is wrong and where (a file
that does not exist, JSON broken at a line and column), never an ``[Errno 2]`` or a trace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """A mistake in the command line's arguments; printed without a traceback."""


def read_file(path: str) -> str:
    """The text of ``path``, or a UsageError that says plainly why it cannot be read."""
    file = Path(path)
    try:
        return file.read_text()
    except FileNotFoundError:
        raise UsageError(f"the file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file (UTF-8)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None


def parse_json(text: str, source: str) -> Any:
    """``text`` parsed; broken JSON is named by ``source`` with the line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise UsageError(f"{source} is not valid JSON: {exc.msg} at {where}") from None


def read_json_file(path: str) -> Any:
    return parse_json(read_file(path), path)


def json_argument(text: str, option: str) -> Any:
    """An option's JSON value, or ``@FILE``: the JSON in that file."""
    if text.startswith("@"):
        return read_json_file(text[1:])
    return parse_json(text, option)


def names_a_file(target: str) -> bool:
    """Whether ``run TARGET`` means a file: it exists, or it looks like a path (a graph id
    has no slash and no ``.json``), so that a missing file is reported as missing, not as
    an unknown graph id."""
    return Path(target).exists() or "/" in target or target.lower().endswith(".json")


def plural(count: int, word: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
