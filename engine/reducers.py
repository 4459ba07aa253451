"""Reducers: how the updates of a superstep's tasks merge into one state key.

A graph declares a reducer per state key (``"state": {"results": {"reducer": "append"}}``);
keys without one are replaced, and then only one task of a superstep may write them; a key
declared ``replace`` may be written by several, the last update in merge order winning. The
names and behaviours follow LangGraph's common ``Annotated`` reducers, so that graphs move
over: ``operator.add`` is ``add``, ``add_messages`` is ``messages``.

Every reducer is ``(current, update) -> merged``, where ``current`` is ``None`` when the key
is not in the state yet. They never mutate their arguments: a state is shared by every task
of a superstep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import HopgraphError

Reducer = Callable[[Any, Any], Any]


class ReducerError(HopgraphError):
    """An update cannot be merged by its key's reducer (a string added to a number...)."""


def replace(current: Any, update: Any) -> Any:
    """The update wins (the default)."""
    return update


def append(current: Any, update: Any) -> list[Any]:
    """A list that grows: a list update extends it, any other value is appended."""
    base = _list(current, "append")
    return [*base, *update] if isinstance(update, list) else [*base, update]


def add(current: Any, update: Any) -> Any:
    """``current + update`` (numbers sum, lists and strings concatenate), as ``operator.add``."""
    if current is None:
        return update
    numbers = (int, float)
    if isinstance(current, bool) or isinstance(update, bool):
        raise ReducerError("add: booleans are not numbers here; use replace")
    if isinstance(current, numbers) and isinstance(update, numbers):
        return current + update
    if isinstance(current, list) and isinstance(update, list):
        return current + update
    if isinstance(current, str) and isinstance(update, str):
        return current + update
    raise ReducerError(f"add: cannot add {type(update).__name__} to {type(current).__name__}")


def merge(current: Any, update: Any) -> dict[str, Any]:
    """A dict updated key by key (shallow), as ``{**current, **update}``."""
    if not isinstance(update, Mapping):
        raise ReducerError(f"merge: the update must be an object, got {type(update).__name__}")
    if current is None:
        return dict(update)
    if not isinstance(current, Mapping):
        raise ReducerError(f"merge: the state holds {type(current).__name__}, not an object")
    return {**current, **update}


def _ordered(pick: Callable[[Any, Any], Any], name: str) -> Reducer:
    def reducer(current: Any, update: Any) -> Any:
        if current is None:
            return update
        try:
            return pick(current, update)
        except TypeError:
            kinds = f"{type(current).__name__} and {type(update).__name__}"
            raise ReducerError(f"{name}: cannot compare {kinds}") from None

    reducer.__name__ = name
    reducer.__doc__ = f"The {name} of the state's value and the update."
    return reducer


def messages(current: Any, update: Any) -> list[Any]:
    """A message list (LangGraph's ``add_messages``): an update whose ``id`` is already in the
    list replaces that message in place; any other is appended. Lists append in order.

    An ``id`` is a string or a number: a list or an object as an id is a ReducerError (the
    run fails with the reason), not a TypeError that would be retried as a crash."""
    base = list(_list(current, "messages"))
    where = {_message_id(m): i for i, m in enumerate(base) if isinstance(m, Mapping) and "id" in m}
    for message in update if isinstance(update, list) else [update]:
        ident = _message_id(message) if isinstance(message, Mapping) else None
        if ident is not None and ident in where:
            base[where[ident]] = message
        else:
            if ident is not None:
                where[ident] = len(base)
            base.append(message)
    return base


def _message_id(message: Mapping[str, Any]) -> Any:
    ident = message.get("id")
    if ident is not None and not isinstance(ident, str | int | float):
        raise ReducerError(
            f"messages: a message id must be a string or a number, got {type(ident).__name__}"
        )
    return ident


def _list(current: Any, name: str) -> list[Any]:
    if current is None:
        return []
    if not isinstance(current, list):
        raise ReducerError(f"{name}: the state holds {type(current).__name__}, not a list")
    return current


REDUCERS: Mapping[str, Reducer] = {
    "replace": replace,
    "append": append,
    "extend": append,
    "add": add,
    "merge": merge,
    "min": _ordered(min, "min"),
    "max": _ordered(max, "max"),
    "messages": messages,
}
"""Every reducer a graph may name, by the name it uses."""

EMPTY: Mapping[str, Callable[[], Any]] = {
    "append": list,
    "extend": list,
    "messages": list,
    "merge": dict,
}
"""What a key with each built-in reducer holds before any update, as a LangGraph channel
starts from its type (``Annotated[list, operator.add]`` starts as ``[]``): a map over an
empty list leaves ``[]``, not nothing. The other reducers cannot tell (``add`` sums numbers,
lists or strings): their keys stay absent until written."""
