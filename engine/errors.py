"""The engine's exception tree, and the one table of how each error reaches a client.

Every class carries its :class:`Transport`: the HTTP status, the stable ``type`` string of
the error body (and of the WebSocket error reply, which carries the same status), and what a
queue consumer does with a message that failed with it. Transports look it up with
:func:`transport_of`; none of them keeps its own ``isinstance`` chain.

| error                         | status | ``type``              | queue  |
|-------------------------------|--------|-----------------------|--------|
| HopgraphError (unmapped: bug) | 500    | internal              | retry  |
| GraphValidationError          | 422    | graph_invalid         | park   |
| ConditionError                | 422    | condition_invalid     | park   |
| InvalidInputError             | 422    | invalid_input         | park   |
| InvalidJsonError              | 400    | invalid_json          | park   |
| NotFoundError (graph, tool)   | 404    | not_found             | park   |
| RunNotFound                   | 404    | not_found             | drop   |
| ConflictError, StepConflict   | 409    | conflict              | drop   |
| IdempotencyConflict           | 409    | idempotency_conflict  | park   |
| StateTooLargeError            | 413    | payload_too_large     | park   |
| RecordTooLargeError           | 413    | payload_too_large     | park   |
| QuotaExceeded                 | 429    | quota_exceeded        | retry  |
| MapTooWide                    | 429    | quota_exceeded        | park   |
| RetryLater                    | 503    | unavailable           | retry  |
| TransientStoreError           | 503    | unavailable           | retry  |
| anything else (not ours)      | 500    | internal              | retry  |

Queue dispositions: ``retry`` fails the message so the queue delivers it again (a passing
condition); ``park`` sets it aside at once with its reason, since the same message would
fail the same way every time; ``drop`` acknowledges it: the work it asks for is done, or
moot (a hop for a run that does not exist, a slot another delivery already took).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

Disposition = Literal["retry", "park", "drop"]


@dataclass(frozen=True, slots=True)
class Transport:
    """How an error reads on every transport."""

    status: int
    """HTTP status; also the ``status`` of a WebSocket error reply and of a refused
    ``$connect``."""
    type: str
    """Stable, machine-readable kind: the ``type`` of the HTTP error body."""
    disposition: Disposition
    """What a queue consumer does with a message that failed with this error."""


INTERNAL = Transport(500, "internal", "retry")
"""Any exception that is not an engine error: a bug or an outage, never the client's."""


class HopgraphError(Exception):
    """Base of every error the engine raises on purpose."""

    transport: ClassVar[Transport] = INTERNAL
    """An engine error with no meaning of its own for clients is a bug on our side."""


def transport_of(exc: BaseException) -> Transport:
    """The table's row for ``exc`` (its class's, or :data:`INTERNAL` if it is not ours)."""
    return exc.transport if isinstance(exc, HopgraphError) else INTERNAL


def client_message(exc: BaseException) -> str:
    """What a client is told: the error's own text, except for internal errors, whose text
    may hold internals (a store's message, a stack detail) and says nothing actionable."""
    return "internal error" if transport_of(exc).status == 500 else str(exc)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a graph definition, and where it is."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class GraphValidationError(HopgraphError):
    """A graph definition has problems; ``problems`` lists every one of them."""

    transport = Transport(422, "graph_invalid", "park")

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class ConditionError(HopgraphError):
    """Base of the errors of the condition language."""

    transport = Transport(422, "condition_invalid", "park")


class ConditionSyntaxError(ConditionError):
    """A condition is not valid, or uses something the language refuses."""


class ConditionEvaluationError(ConditionError):
    """A valid condition failed on a particular state (missing key, bad types)."""


class NotFoundError(HopgraphError):
    """Something asked for by id does not exist."""

    transport = Transport(404, "not_found", "park")

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident!r} not found")


class GraphNotFound(NotFoundError):
    def __init__(self, graph_id: str) -> None:
        super().__init__("graph", graph_id)


class RunNotFound(NotFoundError):
    # A message about a run that does not exist changes nothing (a committed run is never
    # rewritten, an unknown one never created by a hop): acknowledged, not parked.
    transport = Transport(404, "not_found", "drop")

    def __init__(self, run_id: str) -> None:
        super().__init__("run", run_id)


class UnknownToolError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__("tool", name)


class ConflictError(HopgraphError):
    """The request conflicts with the current state (cancelling a finished run...)."""

    # On a queue, the state that won already did the work (another delivery's commit).
    transport = Transport(409, "conflict", "drop")


class StepConflict(ConflictError):
    """A step slot is already taken: another delivery of the hop committed first."""

    def __init__(self, run_id: str, seq: int) -> None:
        self.run_id = run_id
        self.seq = seq
        super().__init__(f"step {seq} of run {run_id!r} is already committed")


class IdempotencyConflict(ConflictError):
    """An idempotency key that already started a run came back with a different request.

    ``differs`` names the fields that differ (``input``, ``max_steps``)."""

    transport = Transport(409, "idempotency_conflict", "park")

    def __init__(self, idempotency_key: str, run_id: str, differs: Sequence[str]) -> None:
        self.idempotency_key = idempotency_key
        self.run_id = run_id
        self.differs = list(differs)
        super().__init__(
            f"idempotency key {idempotency_key!r} already started run {run_id!r} with a "
            f"different {' and '.join(self.differs)}; use a new key for a new run"
        )


class InvalidInputError(HopgraphError):
    """A request's content is unacceptable (not a graph problem): bad state, bad limits."""

    transport = Transport(422, "invalid_input", "park")


class InvalidJsonError(InvalidInputError):
    """A document a client sent is not JSON at all."""

    transport = Transport(400, "invalid_json", "park")


class JsonRuleError(InvalidInputError):
    """A JSON document breaks the rules every client document follows (see
    :mod:`engine.json_rules`); ``location`` is where, as a path from the document's root."""

    def __init__(self, location: tuple[str | int, ...], message: str) -> None:
        self.location = location
        self.reason = message
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location)
        super().__init__(f"{where.lstrip('.') or '$'}: {message}")


class StateTooLargeError(HopgraphError):
    """A run's state would exceed the configured size limit."""

    transport = Transport(413, "payload_too_large", "park")

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"state is {size} bytes serialized, above the limit of {limit} bytes")


class RecordTooLargeError(HopgraphError):
    """A record is larger than the store can keep in one item (DynamoDB: 400 KB)."""

    transport = Transport(413, "payload_too_large", "park")

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the {what} takes {size} bytes as stored, above the store's limit of {limit} "
            f"bytes per record"
        )


class QuotaExceeded(HopgraphError):
    """An owner reached one of their quotas (runs in flight, requests per second): the request
    may succeed later, once runs end or the second has passed."""

    transport = Transport(429, "quota_exceeded", "retry")

    def __init__(self, quota: str, limit: int, setting: str) -> None:
        self.quota = quota
        self.limit = limit
        self.setting = setting
        super().__init__(
            f"quota {quota} exceeded: at most {limit} for one owner (the deployment's "
            f"{setting}); try again later"
        )


class MapTooWide(QuotaExceeded):
    """A superstep of a run would have more tasks than the ``map_width`` quota (a map over
    more items, or more items sent): the same request would be refused every time, so a
    queued one is parked, not retried (:mod:`engine.map_quota`)."""

    transport = Transport(429, "quota_exceeded", "park")

    def __init__(self, width: int, limit: int, setting: str, widest: str) -> None:
        self.width = width
        HopgraphError.__init__(
            self,
            f"quota map_width exceeded: a superstep of {width} tasks ({widest}) is above the "
            f"{limit} one run may have (the deployment's {setting})",
        )
        self.quota, self.limit, self.setting = "map_width", limit, setting


class RetryLater(HopgraphError):
    """A message came before it can be acted on (a hop before its predecessor's commit, a
    dead letter before its task's lease ran out); deliver it again later."""

    transport = Transport(503, "unavailable", "retry")


class TransientStoreError(HopgraphError):
    """The store is throttling or briefly unavailable; the hop is retried."""

    transport = Transport(503, "unavailable", "retry")
