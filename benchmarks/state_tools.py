"""Tools of the cost benchmark's state rows: a step that changes about 1 KB of a large state,
and an agent's step that adds a 2 KB message to a growing list (benchmarks/cost_per_step.py).

Their values are random letters and digits (they do not compress, like the benchmark's other
payloads) and deterministic in the step's count, so that a replayed step writes the same."""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from typing import Any

from engine.tools import ToolContext, Toolkit

toolkit = Toolkit("bench_state")


def text(size: int, seed: int) -> str:
    """``size`` characters that do not compress, the same for the same seed."""
    raw = random.Random(seed).randbytes(size)
    return base64.b64encode(raw).decode()[:size]


@toolkit.tool(writes=["count", "note"])
def churn(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Replace ``note`` with ``settings.bytes`` (default 1,000) new characters, and count."""
    count = int(state.get("count", 0)) + 1
    return {"count": count, "note": text(int(ctx.settings.get("bytes", 1000)), count)}


@toolkit.tool(writes=["count", "messages"])
def converse(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Add one message of ``settings.bytes`` (default 2,048) characters to ``messages``."""
    count = int(state.get("count", 0)) + 1
    message = {"role": "assistant", "content": text(int(ctx.settings.get("bytes", 2048)), count)}
    return {"count": count, "messages": [*state.get("messages", []), message]}
