"""EventBridge schedules, emulated: a function with a ``ScheduleV2`` (or ``Schedule``) event in
template.yaml is invoked on its rate, as the scheduler would, with the function's settings
(timeout included). On the local stack this is what runs the sweeper every minute."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.stack.invocations import FunctionSettings, Invocation, invoke
from infra.template import reader as template

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}


class UnsupportedSchedule(ValueError):
    """A schedule expression this emulation does not read (only ``rate(...)`` is)."""


def rate_seconds(expression: str) -> int:
    """``rate(1 minute)`` -> 60; raises :class:`UnsupportedSchedule` for anything else."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise UnsupportedSchedule(f"unsupported schedule expression {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def scheduled_functions(template_doc: template.Template | None = None) -> dict[str, int]:
    """Each function's logical id with a schedule, and its period in seconds."""
    doc = template_doc if template_doc is not None else template.load_template()
    found: dict[str, int] = {}
    for logical_id, resource in (doc.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            props = event.get("Properties") or {}
            if event.get("Type") == "ScheduleV2":
                found[logical_id] = rate_seconds(props["ScheduleExpression"])
            elif event.get("Type") == "Schedule":
                found[logical_id] = rate_seconds(props["Schedule"])
    return found


@dataclass
class ScheduleSource:
    """Invokes ``handler`` every ``period_s`` seconds until stopped, each call an invocation of
    its own (a failure is logged by the handler's own logger and the schedule goes on, as
    EventBridge Scheduler does)."""

    handler: Callable[[Any, Any], Any]
    function: FunctionSettings
    period_s: float

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            self.fire()

    def fire(self) -> Any:
        event = {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}
        try:
            return invoke(Invocation(self.function, chain=1), self.handler, event)
        except Exception:  # the next period tries again
            return None
