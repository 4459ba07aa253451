"""Puts a run's WebSocket events back in step order, each step once.

A subscription replays the committed steps (posted by the WebSocket handler) while the
worker posts new ones live: two posters, so a live step can overtake the end of the replay,
and a step committed during the subscription may come both ways. Every step event carries
its ``seq``; this keeps the next one expected, holds the ones that came early, drops the
repeats, and holds the final run event until every step before it was let through.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]


class StepOrder:
    """Feed events in arrival order to :meth:`add`; it returns those ready, in step order."""

    def __init__(self, after: int = -1) -> None:
        self.next_seq = after + 1
        """The seq of the next step to let through (steps before it were let through)."""
        self._early: dict[int, Event] = {}
        self._final: Event | None = None
        self._announced = 0
        self.done = False
        """The final run event was let through: nothing more will come."""

    @property
    def gap(self) -> bool:
        """A run status counted steps that have not come through: on their way, or lost
        with a replay post that failed (subscribing again from :attr:`next_seq` fills it)."""
        return not self.done and self._announced > self.next_seq

    def add(self, event: Event) -> list[Event]:
        if self.done:
            return []
        kind = event.get("type")
        if kind == "run" and isinstance(event.get("steps"), int):
            self._announced = max(self._announced, event["steps"])
        if kind == "step" and isinstance(event.get("seq"), int):
            if event["seq"] >= self.next_seq:
                self._early.setdefault(event["seq"], event)
            ready = self._in_order()
        elif kind == "run" and event.get("status") != "running":
            self._final = event
            ready = self._in_order()
        else:  # a "running" status, an acknowledgement: nothing to order
            ready = [event]
        if self._final is not None and self.next_seq >= self._final_steps():
            ready.append(self._final)
            self.done = True
        return ready

    def _in_order(self) -> list[Event]:
        ready = []
        while self.next_seq in self._early:
            ready.append(self._early.pop(self.next_seq))
            self.next_seq += 1
        return ready

    def _final_steps(self) -> int:
        assert self._final is not None
        steps = self._final.get("steps")
        return steps if isinstance(steps, int) else self.next_seq
