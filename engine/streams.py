"""Token events: what a streaming model node writes, sent to a run's subscribers while the
model writes it, before the step commits.

A node with ``"stream": true`` hands its provider a :class:`TokenBatcher`, which gathers the
text and publishes a ``token`` event at most every 100 ms or every 1 KB (whichever comes
first), each far inside the WebSocket's 128 KB, through the run's notifier. Token events are
a preview: they are not in the run's log, a late subscriber never sees them, and what counts
is the committed step that follows (the assistant's message).

Where they go is bound once per process (:data:`channel`): the worker's runtime binds its
notifier, the in-process runner its event sink; unbound, a streaming node streams nowhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from engine.events import iso
from engine.tools import ToolContext

Publish = Callable[[str, list[dict[str, Any]]], None]
"""``(run_id, events)``: a notifier's ``publish``."""

MAX_INTERVAL_S = 0.1
MAX_BYTES = 1024
MAX_EVENT_TEXT = 64 * 1024
"""A token event's text at most (a provider's single piece of text could be anything)."""


class TokenBatcher:
    """A :data:`~engine.messages.TokenSink` that publishes batched ``token`` events."""

    def __init__(
        self,
        publish: Publish,
        ctx: ToolContext,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.publish, self.ctx, self.clock, self.wall = publish, ctx, clock, wall
        self.pending: list[str] = []
        self.size = 0
        self.part = 0
        self.last = clock()

    def __call__(self, text: str) -> None:
        self.pending.append(text)
        self.size += len(text.encode())
        if self.size >= MAX_BYTES or self.clock() - self.last >= MAX_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        """Publish what is gathered (the model is done, or a batch is due)."""
        text = "".join(self.pending)
        self.pending, self.size, self.last = [], 0, self.clock()
        for start in range(0, len(text), MAX_EVENT_TEXT):
            event = {
                "type": "token",
                "run_id": self.ctx.run_id,
                "ts": iso(self.wall()),
                "seq": self.ctx.step,
                "task": self.ctx.task,
                "part": self.part,
                "text": text[start : start + MAX_EVENT_TEXT],
            }
            self.part += 1
            self.publish(self.ctx.run_id, [event])


class TokenChannel:
    """Where this process's streaming nodes send their tokens."""

    def __init__(self) -> None:
        self._publish: Publish | None = None
        self._lock = threading.Lock()

    def bind(self, publish: Publish | None) -> None:
        with self._lock:
            self._publish = publish

    def sink(self, ctx: ToolContext) -> TokenBatcher | None:
        publish = self._publish
        return None if publish is None else TokenBatcher(publish, ctx)


channel = TokenChannel()
