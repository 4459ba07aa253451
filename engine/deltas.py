"""Lean step storage: a step keeps what its superstep changed, the full state now and then.

Both stores (:mod:`engine.memory`, ``functions/aws/dynamodb_store.py``) keep a step's state
this way and read it back through the same two functions, :func:`encode` and
:func:`rebuild`, so that the contract suite proves one rule for both.

**What a step stores.** Its *delta*: the keys its superstep wrote, each as one of

- ``set``: the value, when it is new or was replaced;
- ``append``: only the items added, when the new value is the old list with items after it
  (an agent's message list: a step adds 2 KB, not the whole conversation again);
- ``keys``: the key alone, when its value is the state's after the step (unchanged, or a
  snapshot's, which holds the state anyway). A large value that did not change is never
  written again.

**Snapshots.** The full state is stored (beside the delta, whose values then are ``keys``)
at every superstep ``seq`` with ``(seq + 1) % SNAPSHOT_EVERY == 0``, when the deltas since the
last full state pass :data:`SNAPSHOT_AFTER_BYTES`, and whenever the writer does not know the
state before the step (then it cannot prove a delta right). The run's input, in its header,
is the full state before superstep 0: a run of fewer than ``SNAPSHOT_EVERY`` supersteps
stores no state at all beside it.

**Reading a state back** (:func:`rebuild`): the nearest full state at or before the
superstep (a snapshot or the input), then each delta after it in order. The nearest full
state is never further back than :func:`base_of` (a pure function of the seq), so one range
read from there holds everything; a reader that still holds a state it rebuilt or wrote
(:class:`StateCache`) reads only the deltas after it.

How K and the size were chosen (``benchmarks/cost_per_step.py``, state rows: 10 runs of 100
supersteps in flight, a 50 KB state that does not compress, ~1 KB of it new each step; SQS):

- each snapshot writes the whole state (~40 write units for 50 KB), K supersteps apart: per
  step 40 / K units. Measured: K = 16, 5.41 write units a step (5.07 USD per million
  steps); K = 32, 4.30 (3.96). With the run's input kept out of the header (functions/aws/
  dynamodb_store.py, ``HEADER_BLOB_ABOVE``) K = 32 measures 3.16 units and 3.51 USD; the
  full state every step 39.4 units and 27.87 USD.
- a cold read (a worker that never served the run) costs the bytes from :func:`base_of`: one
  snapshot and up to K-1 deltas. Measured at K = 32: 11.6 read units a step when every
  invocation is a new worker (4.65 USD), against 1.9 warm; doubling K again would halve the
  snapshot writes (~0.6 units, 0.39 USD) and double the deltas a cold read folds. K = 32
  keeps the cold read within about one more snapshot's worth of bytes.
- the size bound (64 KB of deltas, counting a blob as its pointer) starts a snapshot early
  when steps change a lot, so that a cold read never folds much more than a state's worth.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.blobs import BLOB_ABOVE, POINTER_BYTES
from engine.records import record

SNAPSHOT_EVERY = 32
"""K: the full state is stored at every K-th superstep (seqs K-1, 2K-1, ...)."""

SNAPSHOT_AFTER_BYTES = 64 * 1024
"""The deltas stored since the last full state, in serialized bytes, that start a snapshot."""

HEADER = -1
"""The "seq" of the run's input: the full state before superstep 0."""

Delta = dict[str, Any]
"""``{"set": {key: value}, "append": {key: [items]}, "keys": [key, ...]}`` (empty parts left
out)."""


def base_of(seq: int, every: int | None = None) -> int:
    """The furthest back the nearest full state before or at ``seq`` can be: the last
    K-boundary snapshot, or the run's input (:data:`HEADER`)."""
    every = every or SNAPSHOT_EVERY
    if seq < every - 1:
        return HEADER
    return seq - (seq + 1) % every


def is_boundary(seq: int, every: int | None = None) -> bool:
    return (seq + 1) % (every or SNAPSHOT_EVERY) == 0


def size_of(value: Any) -> int:
    """Serialized bytes of ``value`` (compact JSON), as the stores write it."""
    kind = type(value)  # the common small values are measured without encoding them
    if kind is int:
        return len(repr(value))
    if kind is str and _plain(value):
        return len(value) + 2
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _plain(text: str) -> bool:
    """Whether JSON writes ``text`` as it is, between its quotes (nothing to escape)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def stored_size(delta: Delta) -> int:
    """About the bytes a delta takes in its item: a value kept as a blob (engine/blobs.py)
    counts as its pointer. Writers and readers measure the same way."""
    keys = delta.get("keys")
    size = size_of(keys) if keys else 2  # no keys: "[]"
    for values in (delta.get("set"), delta.get("append")):
        if not values:
            continue
        for key, value in values.items():
            each = size_of(value)
            size += len(key) + (each if each <= BLOB_ABOVE else POINTER_BYTES)
    return size


def encode(
    updates: Mapping[str, Any], after: Mapping[str, Any], before: Mapping[str, Any] | None
) -> Delta:
    """The delta of a step that wrote ``updates`` (merged values) turning ``before`` into
    ``after``. ``before`` ``None``: unknown, every value is ``set``."""
    delta: Delta = {}  # each part made when a key needs it (empty parts left out)
    known = before if before is not None else {}
    for key, value in updates.items():
        old = known.get(key, _MISSING)
        if old is not _MISSING and (old is value or old == value):
            delta.setdefault("keys", []).append(key)
        elif isinstance(old, list) and _extends(old, value):
            delta.setdefault("append", {})[key] = value[len(old) :]
        else:
            delta.setdefault("set", {})[key] = value
    return delta


def keys_only(updates: Mapping[str, Any]) -> Delta:
    """The delta of a snapshot: its values are in the state stored beside it."""
    return {"keys": list(updates)} if updates else {}


def _extends(old: list[Any], new: Any) -> bool:
    return isinstance(new, list) and 0 < len(old) <= len(new) and new[: len(old)] == old


def apply(state: Mapping[str, Any], delta: Delta) -> dict[str, Any]:
    """The state after a step whose delta is ``delta`` (a new dict; ``state`` is kept)."""
    after = dict(state)
    sets, appends = delta.get("set"), delta.get("append")
    if sets:
        after.update(sets)
    if appends:
        for key, items in appends.items():
            after[key] = [*after.get(key, []), *items]
    return after


def updates_of(delta: Delta, after: Mapping[str, Any]) -> dict[str, Any]:
    """The step's merged updates (what its log entry shows), from its delta and the state
    after it."""
    sets, appends, keys = delta.get("set"), delta.get("append"), delta.get("keys")
    updates = dict(sets) if sets else {}
    for named in (appends, keys):
        if named:
            updates.update((key, after[key]) for key in named if key in after)
    return updates


@record
class Stored:
    """A step as stored: its seq, its delta, and its full state if it is a snapshot (or the
    run's input, at seq :data:`HEADER`)."""

    seq: int
    delta: Delta
    state: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rebuilt:
    states: dict[int, dict[str, Any]]
    """The state after each step read, by seq."""
    since: int
    """Delta bytes stored after the last full state, up to the last step read."""


def rebuild(stored: Iterable[Stored], start: tuple[int, dict[str, Any], int] | None = None
            ) -> Rebuilt:  # fmt: skip
    """The state after each step of ``stored`` (ordered by seq, contiguous) from the
    nearest full state: a snapshot among them, or ``start`` (a seq, its state, and the delta
    bytes since its full state, known beforehand). Raises LookupError if a delta comes with
    no full state before it (its base was not read: a broken store or a wrong range)."""
    states: dict[int, dict[str, Any]] = {}
    current = start
    # The deltas applied since current's full state, measured once at the end: a read of a
    # whole log would otherwise also measure every delta before its last snapshot.
    applied: list[Delta] = []
    for item in stored:
        if item.state is not None:
            current = (item.seq, item.state, 0)
            applied.clear()
        elif current is not None and item.seq == current[0]:
            pass  # the step the known state is after: nothing to apply
        elif current is None or current[0] != item.seq - 1:
            raise LookupError(f"step {item.seq}: its delta has no full state before it")
        else:
            current = (item.seq, apply(current[1], item.delta), current[2])
            applied.append(item.delta)
        states[item.seq] = current[1]
    if current is None:
        return Rebuilt(states, -1)
    return Rebuilt(states, current[2] + sum(map(stored_size, applied)))


def snapshot_due(seq: int, since: int, delta: Delta, before_known: bool) -> tuple[bool, int]:
    """Whether step ``seq`` stores the full state, and the delta bytes since the last full
    state once it is stored. ``since``: those bytes before it (-1: unknown)."""
    if not before_known or since < 0 or is_boundary(seq):
        return True, 0
    size = since + stored_size(delta)
    if size > SNAPSHOT_AFTER_BYTES:
        return True, 0
    return False, size


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Cached:
    seq: int
    state: Any
    """The state, in the cache's form (see :class:`StateCache`)."""
    since: int
    """Delta bytes stored since the last full state (-1: unknown)."""


class StateCache:
    """The last state each run was read or written at, so that the next read of the run
    reads only the deltas after it and the next write knows the state it starts from.

    A committed step's state never changes (each slot is written once), so an entry is
    never stale, only old: a reader of a later step still reads every delta after it.
    ``frozen``: entries keep serialized JSON (a tool that changes its state in place cannot
    change the cache), at the cost of a decode per hit; else the dicts themselves."""

    def __init__(self, runs: int = 256, max_bytes: int = 32 * 1024 * 1024,
                 *, frozen: bool = True) -> None:  # fmt: skip
        self._runs = runs
        self._max_bytes = max_bytes
        self._frozen = frozen
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, run_id: str) -> tuple[int, dict[str, Any], int] | None:
        """(seq, state, since) of the run's latest known state, or ``None``."""
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is None:
                return None
            self._entries.move_to_end(run_id)
        state = json.loads(entry.state) if self._frozen else entry.state
        return entry.seq, state, entry.since

    def put(self, run_id: str, seq: int, state: Mapping[str, Any], since: int) -> None:
        """Remember the run's state after ``seq`` unless a later one is known. The same
        step's state, known already, is not serialized again (frozen entries): every task of
        a map reads its slot, and serializing the state each time (the input of a map of n
        items, n values) made each of its n tasks cost O(n)."""
        with self._lock:
            old = self._entries.get(run_id)
            if old is not None and self._frozen and (old.seq, old.since) == (seq, since):
                self._entries.move_to_end(run_id)
                return
        value: Any = dict(state)
        size = 0
        if self._frozen:
            value = json.dumps(state, separators=(",", ":"), default=str)
            size = len(value)
            if size > self._max_bytes // 4:
                self.forget(run_id)
                return
        with self._lock:
            old = self._entries.get(run_id)
            if old is not None and old.seq > seq:
                return
            if old is not None:
                self._bytes -= _weight(old)
            self._entries[run_id] = Cached(seq, value, since)
            self._entries.move_to_end(run_id)
            self._bytes += size
            while len(self._entries) > self._runs or self._bytes > self._max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= _weight(dropped)

    def forget(self, run_id: str) -> None:
        with self._lock:
            old = self._entries.pop(run_id, None)
            if old is not None:
                self._bytes -= _weight(old)


def _weight(entry: Cached) -> int:
    return len(entry.state) if isinstance(entry.state, str) else 0


def start_of(first: int, cached: tuple[int, dict[str, Any], int] | None
             ) -> tuple[int, tuple[int, dict[str, Any], int] | None]:  # fmt: skip
    """Where a read of the states from step ``first`` on begins: the first seq to read
    (:data:`HEADER`: the run's input too) and the known state to fold from, if any.

    A known (cached) state at or after :func:`base_of` (``first``) saves reading the
    snapshot: only the deltas after it are read. Any other read starts at ``base_of``,
    whose item is a full state (a boundary snapshot, or the input)."""
    base = base_of(first)
    if cached is not None and base <= cached[0] <= first:
        return max(cached[0], 0), cached
    return base, None


def lean(seq: int, updates: Mapping[str, Any], state: dict[str, Any],
         before: Mapping[str, Any] | None, since: int) -> tuple[Stored, int]:  # fmt: skip
    """How step ``seq`` (its merged ``updates``, the ``state`` after it) is stored, given the
    state ``before`` it (``None``: unknown) and the delta bytes ``since`` that state's full
    state: a delta when that is known, provably rebuilds ``state``, and no snapshot is due;
    else the full state. Returns it with the delta bytes since the full state after it."""
    delta = encode(updates, state, before)
    known = before is not None and apply(before, delta) == state
    snapshot, since = snapshot_due(seq, since if known else -1, delta, known)
    if snapshot:
        return Stored(seq, keys_only(updates), state), 0
    return Stored(seq, delta), since
