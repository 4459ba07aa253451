"""The quality score: 10 for clean code, falling smoothly as issues pile up.

    penalty = sum(SEVERITY_WEIGHTS[severity] for each issue) / max(1, number of functions)
            + COMPLEXITY_WEIGHT * max(0, average complexity - COMPLEXITY_ALLOWANCE)
    score   = 10 * exp(-penalty / SCALE), rounded to one decimal

Dividing by the number of functions makes the score a density: ten functions with one
missing docstring each score like one function with one. With SCALE = 4, a function's worth
of minor issues (say a missing docstring and an unused import: 1.0) still scores 7.8, while a
bare ``except:`` and a mutable default in one small function (6.0) score 2.2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

SEVERITY_WEIGHTS: dict[str, float] = {"high": 3.0, "medium": 1.5, "low": 0.5}
UNKNOWN_SEVERITY_WEIGHT = 1.5
COMPLEXITY_ALLOWANCE = 5.0
COMPLEXITY_WEIGHT = 0.5
SCALE = 4.0


def penalty(
    issues: Iterable[Mapping[str, Any]], complexity: Mapping[str, int], functions: int
) -> float:
    weight = sum(
        SEVERITY_WEIGHTS.get(str(i.get("severity")), UNKNOWN_SEVERITY_WEIGHT) for i in issues
    )
    values = [float(v) for v in complexity.values()]
    average = sum(values) / len(values) if values else 0.0
    return weight / max(1, functions) + COMPLEXITY_WEIGHT * max(0.0, average - COMPLEXITY_ALLOWANCE)


def quality_score(
    issues: Iterable[Mapping[str, Any]], complexity: Mapping[str, int], functions: int
) -> float:
    """A score from 0 to 10 (one decimal); typical decent code scores 7 or more."""
    return round(10.0 * math.exp(-penalty(issues, complexity, functions) / SCALE), 1)
