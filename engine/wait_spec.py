"""What a wait node declares (``{"wait": {"seconds": N}}`` or ``{"wait": {"until": key}}``)
and when it wakes: pure functions of the run's records. The protocol's hooks are
:mod:`engine.timers`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.retry_policy import Report

MAX_WAIT_S = 365 * 86_400.0


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """How long a wait node waits: ``seconds`` from its superstep's opening, or ``until``
    the time a state key holds."""

    seconds: float | None = None
    until: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds} if self.seconds is not None else {"until": self.until}


def read_wait(spec: Any, loc: str, report: Report) -> WaitSpec | None:
    """A ``wait`` object as written, checked; problems go to ``report``."""
    shape = '{"seconds": 3600} or {"until": "<state key holding an ISO time>"}'
    if not isinstance(spec, Mapping) or len(spec) != 1:
        report(loc, f"must be {shape}")
        return None
    seconds, until = spec.get("seconds"), spec.get("until")
    if "seconds" in spec:
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not isinstance(seconds, int | float) or not number or not 0 <= seconds <= MAX_WAIT_S:
            report(f"{loc}.seconds", f"must be a number of seconds from 0 to {MAX_WAIT_S:g}")
            return None
        return WaitSpec(seconds=float(seconds))
    if "until" in spec:
        if not isinstance(until, str) or not until:
            report(f"{loc}.until", "must name the state key that holds the time to wake at")
            return None
        return WaitSpec(until=until)
    report(loc, f"must be {shape}")  # its one key is unknown: the key table said which
    return None


class WaitError(ValueError):
    """A wait's ``until`` key holds no time: the wait node's task fails with this."""


def wakes_at(spec: WaitSpec, state: Mapping[str, Any], opened_at: float) -> float:
    """When a wait node whose superstep opened at ``opened_at`` wakes (epoch seconds).
    Raises :class:`WaitError` when its ``until`` key holds no time."""
    if spec.seconds is not None:
        return opened_at + spec.seconds
    value = state.get(str(spec.until))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.timestamp()
            raise WaitError(f"state key {spec.until!r} holds {value!r}, a time without a "
                            "zone: add one (2030-01-01T09:00:00Z)")  # fmt: skip
    raise WaitError(f"state key {spec.until!r} holds {value!r:.60}, not a time: an ISO 8601 "
                    "time with a zone, or epoch seconds")  # fmt: skip
