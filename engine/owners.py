"""A helper's reference to the object that owns it, without a reference cycle.

The protocol owns its hooks (pauses, subgraphs, folds, the sweeper), and each hook calls back
into the protocol. Two strong references make a cycle, which only Python's cyclic collector
frees: an in-process run's protocol, and with it the store holding every step of the run,
outlived the run until the next full collection, which then had all of them to walk (a
2,000-step run left 6,112 objects to it; over twenty such runs, three full collections took
80 to 110 ms each). A weak reference back lets reference counting free a run's protocol,
store and hooks as soon as the run's last user lets go.
"""

from __future__ import annotations

import weakref
from typing import TypeVar, cast

Owner = TypeVar("Owner")


def weakly(owner: Owner) -> Owner:
    """A weak proxy of ``owner``, for a helper it owns to keep: it answers as ``owner`` does
    for as long as ``owner`` lives, which is as long as the helper is used."""
    return cast(Owner, weakref.proxy(owner))
