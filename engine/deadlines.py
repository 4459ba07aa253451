"""A tool call with a deadline (a node's ``timeout_s``, engine/retry_policy.py), and the time
left in the worker's invocation, checked before a tool starts.

An async tool is cancelled at its deadline (``asyncio.wait_for``). A sync tool cannot be
stopped from outside: it runs on a thread of its own, and at the deadline the attempt fails
with ``TimeoutError`` and whatever the thread returns later is discarded. Its side effects
still happen (on Lambda, possibly during a later invocation of the same instance): a tool
with a timeout should key its side effects on ``ctx.idempotency_key``, as a tool that may
run twice should anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from engine.errors import RetryLater

T = TypeVar("T")

_invocation_ends: ContextVar[float | None] = ContextVar("invocation_ends", default=None)
"""When the running invocation will be stopped (``time.monotonic()``); ``None``: no limit
(in process). The worker's carriers set it from the Lambda context."""


@contextlib.contextmanager
def invocation_limit(remaining_s: float | None) -> Iterator[None]:
    """Within this block, the invocation has ``remaining_s`` seconds left (Lambda's
    ``context.get_remaining_time_in_millis() / 1000``): a tool that may not finish and
    commit in them is not started (:func:`check_time_for`)."""
    ends = None if remaining_s is None else time.monotonic() + remaining_s
    token = _invocation_ends.set(ends)
    try:
        yield
    finally:
        _invocation_ends.reset(token)


def check_time_for(what: str, timeout_s: float | None, margin_s: float) -> None:
    """Raise :class:`RetryLater` (the delivery fails and comes back in a fresh invocation)
    unless the invocation has time for a tool of ``timeout_s`` and its commit's ``margin_s``:
    a tool stopped by Lambda's timeout midway would leave side effects and no record of
    them, and its hop would count a failed delivery. A node that declares no timeout
    (``None``) says nothing of how long its tool takes: it is started."""
    ends = _invocation_ends.get()
    if ends is None or timeout_s is None:  # how long a tool takes is known by its deadline
        return
    left = ends - time.monotonic()
    needed = timeout_s + margin_s
    if left < needed:
        raise RetryLater(f"{left:.1f} s left in this invocation, {needed:g} s needed to run "
                         f"{what} and commit it: not started, retried in a fresh one")  # fmt: skip


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
