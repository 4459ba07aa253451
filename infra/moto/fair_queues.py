"""Make moto's SQS standard queues fair queues, as SQS makes any standard queue whose messages
carry a ``MessageGroupId``: a tenant (a group id; a message without one is a tenant of its own)
that holds a disproportionate share of the queue's consumers is a noisy neighbour, and the
messages of quiet tenants are delivered before its own. moto 5 keeps the group id on a
standard queue's messages but delivers in the order they were sent, so a wide map's window of
hops ahead of another run's one hop made that run wait for the whole window on the local
stack, where AWS would deliver the one hop first.

SQS's rules (Amazon SQS Developer Guide, "How Amazon SQS fair queues work"), emulated here
from what moto sees, messages received and not yet deleted (in flight):

- a tenant is noisy when its in-flight messages are more than 10% of the queue's and at
  least 30 (concurrency share), or when its share of the consumers' recent processing time
  is more than 10% (processing-time share). moto sees a message received and deleted, not
  the consumer's work: the time each in-flight message has been held since its receive
  stands for that processing time, which it is while a consumer holds it;
- messages of quiet tenants are delivered first whenever there are any; among noisy tenants,
  the one with the fewest messages in flight first. Nothing is dropped or delayed beyond
  that: with no quiet message waiting, noisy ones are delivered as before;
- a tenant whose backlog is gone is no longer noisy: here, a tenant with nothing in flight.

FIFO queues keep moto's own order (message groups there mean ordering, not tenancy).
Emulator fidelity only: the same messages reach the worker in an order SQS may also choose.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

CONCURRENCY_SHARE = 0.10
"""Above this share of the queue's in-flight messages (and with ``CONCURRENCY_FLOOR``), noisy."""
CONCURRENCY_FLOOR = 30
"""In-flight messages a tenant needs before its concurrency share can make it noisy."""
PROCESSING_SHARE = 0.10
"""Above this share of the time consumers hold messages, noisy."""
_RECEIVED_AT = "_hopgraph_received_at"
"""A stored message's attribute: when it was last received (seconds)."""


@contextlib.contextmanager
def fair_queues() -> Iterator[None]:
    """Inside the block, ReceiveMessage on a standard queue delivers as a fair queue does."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.__dict__["receive_message"]
    SQSBackend.receive_message = _fair(original)
    try:
        yield
    finally:
        SQSBackend.receive_message = original


def _fair(original: Any) -> Any:
    def receive_message(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = backend.get_queue(queue_name)
        if queue.fifo_queue:
            return original(backend, queue_name, *args, **kwargs)
        now = time.time()
        arranged = delivery_order(queue._messages, now)
        if arranged is None:
            received = original(backend, queue_name, *args, **kwargs)
        else:
            received = _in_order(queue, arranged, lambda: original(backend, queue_name, *args,
                                                                  **kwargs))  # fmt: skip
        _note_receive(queue._messages, {m.id for m in received}, now)
        return received

    return receive_message


def _in_order(queue: Any, arranged: list[Any], receive: Any) -> Any:
    """Run ``receive`` over the queue's messages in the ``arranged`` order, then put back the
    queue's own order (with what the receive removed or added meanwhile)."""
    own = queue._messages
    queue._messages = arranged
    try:
        return receive()
    finally:
        now_held = queue._messages  # a delete may have replaced the list meanwhile
        present = {id(m) for m in now_held}
        before = {id(m) for m in own}
        queue._messages = [m for m in own if id(m) in present] + [
            m for m in now_held if id(m) not in before
        ]


def delivery_order(messages: Sequence[Any], now: float) -> list[Any] | None:
    """The messages in the order a fair queue delivers them, or None when that is their own
    order (no noisy tenant has a message waiting behind a quiet one)."""
    held, count, seconds = _in_flight(messages, now)
    noisy = _noisy(count, seconds)
    if not noisy:
        return None

    def rank(place: int) -> tuple[int, int, int]:
        tenant = _tenant(messages[place])
        if tenant not in noisy:
            return (0, 0, place)
        return (1, count[tenant], place)

    order = sorted((i for i in range(len(messages)) if id(messages[i]) not in held), key=rank)
    waiting = [i for i in range(len(messages)) if id(messages[i]) not in held]
    if order == waiting:
        return None
    return [messages[i] for i in order] + [m for m in messages if id(m) in held]


def _in_flight(
    messages: Sequence[Any], now: float
) -> tuple[set[int], Counter[Hashable], Counter[Hashable]]:
    """The messages in flight (received, not visible again), and per tenant their number and
    the seconds they have been held."""
    now_ms = now * 1000.0
    held: set[int] = set()
    count: Counter[Hashable] = Counter()
    seconds: Counter[Hashable] = Counter()
    for message in messages:
        if message.approximate_receive_count == 0 or message.visible_at <= now_ms:
            continue
        tenant = _tenant(message)
        held.add(id(message))
        count[tenant] += 1
        seconds[tenant] += max(0.0, now - getattr(message, _RECEIVED_AT, now))
    return held, count, seconds


def _note_receive(messages: Sequence[Any], ids: set[str], now: float) -> None:
    """Mark the stored messages a receive returned (it returns copies) with its time."""
    if ids:
        for message in messages:
            if message.id in ids:
                setattr(message, _RECEIVED_AT, now)


def _noisy(count: Counter[Hashable], seconds: Counter[Hashable]) -> set[Hashable]:
    total, busy = sum(count.values()), sum(seconds.values())
    return {
        tenant
        for tenant in count
        if (count[tenant] > CONCURRENCY_SHARE * total and count[tenant] >= CONCURRENCY_FLOOR)
        or (busy > 0 and seconds[tenant] > PROCESSING_SHARE * busy)
    }


def _tenant(message: Any) -> Hashable:
    group: str | None = message.group_id
    return ("group", group) if group is not None else ("message", message.id)
