"""The price table that turns a run's tokens into an estimated cost (``GET /runs/{id}``'s
``usage``): ``HOPGRAPH_MODEL_PRICES``, a JSON object of model id -> ``{"input_per_million":
USD, "output_per_million": USD}``. Nothing is priced by default: prices differ by region
and change, so a deployment states the ones it pays (a model without a price is listed in
``unpriced_models``, never costed at zero)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

PRICES_ENV = "HOPGRAPH_MODEL_PRICES"


@lru_cache(maxsize=1)
def configured_prices() -> dict[str, Any]:
    text = os.environ.get(PRICES_ENV, "").strip()
    if not text:
        return {}
    table = json.loads(text)
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"{PRICES_ENV} must be a JSON object of model id -> prices")
    return table
