"""A run's model usage, totalled from the assistant messages in its state, and its estimated
cost from a price table (configuration: ``HOPGRAPH_MODEL_PRICES``, functions/models/prices.py).

Each model task records its model, tokens, latency and stop reason in its message's
``metadata`` (:func:`engine.agents.usage_entry`); a message has one id however often its task
was delivered, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Prices = Mapping[str, Mapping[str, float]]
"""Model id -> ``{"input_per_million": usd, "output_per_million": usd}``."""


def run_usage(state: Mapping[str, Any], prices: Prices | None = None) -> dict[str, Any] | None:
    """Totals over every model call in ``state`` (``None``: no model ran), per model, and the
    estimated cost in USD of the models the price table lists."""
    by_model: dict[str, dict[str, Any]] = {}
    for value in state.values():
        if not isinstance(value, list):
            continue
        for message in value:
            meta = message.get("metadata") if isinstance(message, Mapping) else None
            if not isinstance(meta, Mapping) or "output_tokens" not in meta:
                continue
            row = by_model.setdefault(
                str(meta.get("model", "")),
                {"calls": 0, "input_tokens": 0, "output_tokens": 0, "latency_ms": 0.0},
            )
            row["calls"] += 1
            row["input_tokens"] += int(meta.get("input_tokens") or 0)
            row["output_tokens"] += int(meta.get("output_tokens") or 0)
            row["latency_ms"] = round(row["latency_ms"] + float(meta.get("latency_ms") or 0), 1)
    if not by_model:
        return None
    cost, unpriced = 0.0, []
    for model, row in by_model.items():
        price = (prices or {}).get(model)
        if price is None:
            unpriced.append(model)
            continue
        row["estimated_cost_usd"] = round(
            row["input_tokens"] * float(price.get("input_per_million", 0)) / 1e6
            + row["output_tokens"] * float(price.get("output_per_million", 0)) / 1e6,
            6,
        )
        cost += row["estimated_cost_usd"]
    totals = {
        k: sum(r[k] for r in by_model.values()) for k in ("calls", "input_tokens", "output_tokens")
    }
    return {
        **totals,
        "latency_ms": round(sum(r["latency_ms"] for r in by_model.values()), 1),
        "estimated_cost_usd": round(cost, 6),
        "unpriced_models": sorted(unpriced),
        "by_model": by_model,
    }
