"""What the CLI prints of a model's work: the last answer of each message list in a final
state (in full: the state's preview cuts long strings), and streamed tokens as they come."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def last_answers(state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, text)`` for each state key holding messages whose last is the assistant's."""
    found = []
    for key, value in state.items():
        if not isinstance(value, list) or not value:
            continue
        last = value[-1]
        if not (isinstance(last, Mapping) and last.get("role") == "assistant"):
            continue
        content = last.get("content")
        blocks = content if isinstance(content, list) else [{"text": str(content)}]
        text = "".join(b["text"] for b in blocks if isinstance(b, Mapping) and "text" in b)
        if text:
            found.append((str(key), text))
    return found
