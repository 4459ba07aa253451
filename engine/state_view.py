"""The state as a task's tool sees it: read-only at the top, and every list, dict or set it
reads is the task's own copy.

On AWS each hop decodes the state from its records, so a tool that changes a list in place
(``state["items"].append(x)``) changes only its own copy: what is committed is what it returns.
In process the committed states are live objects, shared from one step to the next and with
the caller's input; handing them to a tool as they are let such a tool rewrite the steps
before it (every log entry showed the last list) and the input its caller passed. A view
gives the same answer in both places, and copies only what the tool reads: a map task that
reads its item does not copy the list mapped over.

Written by hand: ``types.MappingProxyType`` (what tools had) guards the top level only, and
``copy.deepcopy`` of the whole state at every step would cost what it copies whether read or
not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

_CONTAINERS = (list, dict, set)


class StateView(Mapping[str, Any]):
    """A read-only mapping over ``state``: ``view[key] = x`` raises TypeError, and a list,
    dict or set read from it is copied (deeply, through nested lists, dicts and sets) the
    first time it is read, then the same copy for the rest of the task, so that a tool that
    changes it and reads it again sees its change."""

    __slots__ = ("_own", "_state")

    def __init__(self, state: Mapping[str, Any]) -> None:
        self._state = state
        self._own: dict[str, Any] | None = None
        """The copies made so far, by key (made with the first)."""

    def __getitem__(self, key: str) -> Any:
        value = self._state[key]
        if type(value) not in _CONTAINERS:  # a scalar: shared, as it cannot change
            return value
        if self._own is None:
            self._own = {}
        own = self._own.get(key)
        if own is None:
            own = self._own[key] = detached(value)
        return own

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def __repr__(self) -> str:
        return f"StateView({self._state!r})"

    # What a MappingProxyType (the view tools had) also answers, so that tools written
    # against it keep working: each gives a dict of the tool's own.
    def copy(self) -> dict[str, Any]:
        return {key: self[key] for key in self._state}

    def __or__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.copy(), **other}

    def __ror__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        return {**other, **self.copy()}


def detached(value: Any) -> Any:
    """``value`` with every list, dict and set in it copied; other values shared (strings,
    numbers and the like cannot change; an object of another kind is the caller's own)."""
    kind = type(value)
    if kind is list:
        return [detached(item) for item in value]
    if kind is dict:
        return {key: detached(item) for key, item in value.items()}
    if kind is set:
        return set(value)  # its members are hashable, so not lists, dicts or sets
    return value
