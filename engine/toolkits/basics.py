"""Small general-purpose tools: counters, waits and state plumbing.

Handy for trying hopgraph out, for load tests and for graphs that need a step that only
moves data. Each tool reads its knobs from the node's ``settings``.
"""

from __future__ import annotations

import string
import time
from collections.abc import Mapping
from typing import Any

from engine.tools import ToolContext, Toolkit

toolkit = Toolkit("basics")

MAX_WAIT_MS = 10_000
"""Longest ``wait``: a step that sleeps holds a worker (and its function's timeout) meanwhile;
a longer pause belongs to a delayed hop, not to a sleeping tool."""


@toolkit.tool(reads=["<settings.key>"], writes=["<settings.key>"])
def increment(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Add ``settings.by`` (default 1) to the number at ``settings.key`` (default "count")."""
    key = str(ctx.settings.get("key", "count"))
    by = ctx.settings.get("by", 1)
    return {key: state.get(key, 0) + by}


@toolkit.tool(writes=["<settings.values>"])
def set_values(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Set every key of ``settings.values`` in the state."""
    return dict(ctx.settings.get("values", {}))


@toolkit.tool
def wait(state: Mapping[str, Any], ctx: ToolContext) -> None:
    """Sleep ``settings.ms`` milliseconds (default 10, at most 10,000): stands in for slow I/O."""
    ms = ctx.settings.get("ms", 10)
    # The range check also refuses NaN and infinities (every comparison with NaN is false).
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms <= MAX_WAIT_MS:
        raise ValueError(
            f"settings.ms must be a number of milliseconds from 0 to {MAX_WAIT_MS:,}, "
            f"got {ms!r:.40}"
        )
    time.sleep(ms / 1000)


@toolkit.tool(writes=["trail"])
def record_visit(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Append this node's name to ``trail``: shows the path a run took."""
    return {"trail": [*state.get("trail", []), ctx.node]}


@toolkit.tool(writes=["<settings.key>"])
def emit(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Write ``settings.value`` to ``settings.key``: with a reducer on the key, it merges
    (``"append"`` adds it to a list), else it replaces."""
    return {str(ctx.settings.get("key", "out")): ctx.settings.get("value")}


@toolkit.tool(writes=["<settings.key>"])
def fill(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Write ``settings.template`` with ``$name`` placeholders filled from the state (and,
    in a map task, its item) to ``settings.key``. Unknown names stay as written."""
    template = string.Template(str(ctx.settings.get("template", "")))
    return {str(ctx.settings.get("key", "out")): template.safe_substitute(state)}


FLAKY_ERRORS: Mapping[str, type[Exception]] = {
    "ConnectionError": ConnectionError,
    "TimeoutError": TimeoutError,
    "ValueError": ValueError,
}


@toolkit.tool(writes=["attempts"])
def flaky(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Fail with ``settings.error`` (ConnectionError, TimeoutError or ValueError; default
    ConnectionError) until attempt ``settings.succeed_on`` (default 3; 0: never), then write
    the attempt that succeeded to ``attempts``: a flaky service, for trying retries out."""
    succeed_on = ctx.settings.get("succeed_on", 3)
    error = FLAKY_ERRORS.get(str(ctx.settings.get("error", "ConnectionError")), ConnectionError)
    if not succeed_on or ctx.attempt < succeed_on:
        raise error(f"attempt {ctx.attempt} of {ctx.task} failed")
    return {"attempts": ctx.attempt}
