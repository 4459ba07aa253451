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
from engine.ports import Audience
from engine.tools import ToolContext

Publish = Callable[..., None]
"""``(run_id, events, audience)``: a notifier's ``publish``."""
Subscribers = Callable[[str], Any]
"""``run_id -> connections``: the store's ``subscribers``, read at most every
:data:`AUDIENCE_TTL_S` by a streaming node rather than once per batch."""
AUDIENCE_TTL_S = 2.0

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
        subscribers: Subscribers | None = None,
    ) -> None:
        self.publish, self.ctx, self.clock, self.wall = publish, ctx, clock, wall
        self.subscribers = subscribers
        self.pending: list[str] = []
        self.size = 0
        self.part = 0
        self.last = clock()
        self._audience: Audience | None = None
        self._read_at = 0.0

    def audience(self) -> Audience | None:
        """Who gets the next batch: the subscribers read again once they are
        :data:`AUDIENCE_TTL_S` old (one who subscribes meanwhile sees the committed step)."""
        if self.subscribers is None:
            return None
        now = self.clock()
        if self._audience is None or now - self._read_at >= AUDIENCE_TTL_S:
            self._audience = Audience(subscribers=tuple(self.subscribers(self.ctx.run_id)))
            self._read_at = now
        return self._audience

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
            self.publish(self.ctx.run_id, [event], self.audience())


class TokenChannel:
    """Where this process's streaming nodes send their tokens."""

    def __init__(self) -> None:
        self._publish: Publish | None = None
        self._subscribers: Subscribers | None = None
        self._lock = threading.Lock()

    def bind(self, publish: Publish | None, subscribers: Subscribers | None = None) -> None:
        """Send tokens to ``publish`` (``None``: nowhere); ``subscribers``: read them here,
        at most every :data:`AUDIENCE_TTL_S`, rather than let ``publish`` read them for every
        batch."""
        with self._lock:
            self._publish, self._subscribers = publish, subscribers

    def sink(self, ctx: ToolContext) -> TokenBatcher | None:
        publish, subscribers = self._publish, self._subscribers
        if publish is None:
            return None
        return TokenBatcher(publish, ctx, subscribers=subscribers)


channel = TokenChannel()
