"""The engine's exception tree. Adapters and the HTTP layer map these, never strings."""

from __future__ import annotations

from dataclasses import dataclass


class HopgraphError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a graph definition, and where it is."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class GraphValidationError(HopgraphError):
    """A graph definition has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class ConditionError(HopgraphError):
    """Base of the errors of the condition language."""


class ConditionSyntaxError(ConditionError):
    """A condition is not valid, or uses something the language refuses."""


class ConditionEvaluationError(ConditionError):
    """A valid condition failed on a particular state (missing key, bad types)."""


class NotFoundError(HopgraphError):
    """Something asked for by id does not exist."""

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident!r} not found")


class GraphNotFound(NotFoundError):
    def __init__(self, graph_id: str) -> None:
        super().__init__("graph", graph_id)


class RunNotFound(NotFoundError):
    def __init__(self, run_id: str) -> None:
        super().__init__("run", run_id)


class UnknownToolError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__("tool", name)


class ConflictError(HopgraphError):
    """The request conflicts with the current state (cancelling a finished run...)."""


class StepConflict(ConflictError):
    """A step slot is already taken: another delivery of the hop committed first."""

    def __init__(self, run_id: str, seq: int) -> None:
        self.run_id = run_id
        self.seq = seq
        super().__init__(f"step {seq} of run {run_id!r} is already committed")


class InvalidInputError(HopgraphError):
    """A request's content is unacceptable (not a graph problem): bad state, bad limits."""


class StateTooLargeError(HopgraphError):
    """A run's state would exceed the configured size limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"state is {size} bytes serialized, above the limit of {limit} bytes")


class RetryLater(HopgraphError):
    """A hop arrived before its predecessor was committed; deliver it again later."""


class TransientStoreError(HopgraphError):
    """The store is throttling or briefly unavailable; the hop is retried."""
