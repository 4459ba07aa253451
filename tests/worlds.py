"""The in-memory world the protocol's unit tests drive by hand: the run service over the
memory adapters, a clock the test moves, and numbered deliveries, so that each test says
which hop is delivered when (and which twice) instead of letting a runner decide."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.ports import Hop
from engine.service import EngineConfig, RunService
from engine.tools import Toolkit

EPOCH = 1_700_000_000.0


class Clock:
    """A clock that moves only when a test sets ``now``."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """A run service over :class:`MemoryRunStore` and :class:`MemoryQueue` with ``tools``;
    ``config``: the :class:`EngineConfig`'s fields."""

    def __init__(self, tools: Toolkit, *, clock: Clock | None = None, **config: Any) -> None:
        self.clock = clock or Clock()
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.notifier = RecordingNotifier()
        self.service = RunService(self.store, self.queue, tools, notifier=self.notifier,
                                  clock=self.clock, config=EngineConfig(**config))  # fmt: skip
        self.deliveries = itertools.count(1)

    def graph(self, doc: dict[str, Any], owner: str | None = None) -> str:
        """Create ``doc`` as a new graph: its id."""
        return self.service.create_graph(doc, owner=owner)[0].graph_id

    def start(
        self, doc: dict[str, Any], state: dict[str, Any] | None = None, owner: str | None = None
    ) -> str:
        """Start a run of ``doc`` on ``state``: its id (its first hops are queued)."""
        return self.service.start_run(self.graph(doc, owner), state or {}, owner=owner)[0].run_id

    def deliver(self, hop: Hop, delivery: str | None = None) -> str:
        """Deliver ``hop`` once, as a new message unless ``delivery`` names one."""
        return self.service.process_hop(hop, delivery or f"m{next(self.deliveries)}")

    def drain(self) -> None:
        """Deliver every queued hop, and those they queue, until none is left."""
        self.queue.drain(self.deliver)

    @contextmanager
    def parents_untold(self, first: int | None = None) -> Iterator[list[str]]:
        """Inside the block, a child run's end is not told to its parent (its worker died
        first): every child's, or only the ``first`` ones to end. Yields the ids of the
        children whose end went untold."""
        subgraphs = self.service.protocol.subgraphs
        told = subgraphs.ended
        untold: list[str] = []

        def ended(run_id: str) -> None:
            if first is not None and len(untold) >= first:
                told(run_id)
            else:
                untold.append(run_id)

        subgraphs.ended = ended  # type: ignore[method-assign]
        try:
            yield untold
        finally:
            subgraphs.ended = told  # type: ignore[method-assign]
