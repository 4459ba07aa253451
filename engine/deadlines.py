"""A tool call with a deadline (a node's ``timeout_s``, engine/retry_policy.py).

An async tool is cancelled at its deadline (``asyncio.wait_for``). A sync tool cannot be
stopped from outside: it runs on a thread of its own, and at the deadline the attempt fails
with ``TimeoutError`` and whatever the thread returns later is discarded. Its side effects
still happen (on Lambda, possibly during a later invocation of the same instance): a tool
with a timeout should key its side effects on ``ctx.idempotency_key``, as a tool that may
run twice should anyway.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def with_deadline(coroutine: Awaitable[T], timeout_s: float) -> Awaitable[T]:
    """``coroutine`` cancelled after ``timeout_s`` seconds (raises ``TimeoutError``)."""
    return asyncio.wait_for(coroutine, timeout_s)


def call_within(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """``call()`` on a daemon thread; raises ``TimeoutError`` if it has not returned after
    ``timeout_s`` seconds (its late result, or error, is then discarded), else returns what
    it returned or raises what it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"tool-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no result within its timeout of {timeout_s:g} s (a late result "
                           "is discarded)")  # fmt: skip
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value
