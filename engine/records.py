"""Immutable records that cost little to make: the ones every step of a run builds.

A frozen dataclass refuses assignment by its own ``__setattr__``, so its ``__init__`` sets
each field through ``object.__setattr__``: a call per field. A step record (26 fields) then
costs about 4.4 us to make against 0.35 us for a plain slots dataclass, and every step of a
run makes several records (its slot, its origin, its task's result, the close, the step
record, the next hop). :func:`record` makes a slots dataclass that the type checker treats
as frozen (assigning a field is an error there, as for any frozen dataclass), that hashes as
a frozen one does, and that Python builds at the plain cost. Code changes a record the way
it changes a frozen one: with ``dataclasses.replace``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, dataclass_transform, overload

C = TypeVar("C")


@overload
def record(cls: type[C], /) -> type[C]: ...


@overload
def record(*, order: bool = False) -> Callable[[type[C]], type[C]]: ...


@dataclass_transform(frozen_default=True)
def record(
    cls: type[C] | None = None, /, *, order: bool = False
) -> type[C] | Callable[[type[C]], type[C]]:
    """``@dataclass(frozen=True, slots=True)`` for the type checker, without the per-field
    ``object.__setattr__`` at run time (see the module's docstring)."""

    def make(cls: type[C]) -> type[C]:
        return dataclass(slots=True, unsafe_hash=True, order=order)(cls)

    return make if cls is None else make(cls)
