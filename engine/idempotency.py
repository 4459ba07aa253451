"""Idempotent starts: the same key with the same request finds its run; with another, a 409.

A run started with an idempotency key has an id derived from the graph and the key, and the
store creates it unless it exists (:meth:`~engine.ports.RunStore.create_run`, which returns
the stored run either way). A second start with the key is the same request only if it asks
for the same thing: the same input (compared by :func:`input_digest`, kept on the header, so
no input is read back) and the same step limit. Anything else is a client reusing a key for a
different run, which is refused rather than silently answered with the first run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.errors import IdempotencyConflict
from engine.ports import RunRecord


def input_digest(input: dict[str, Any]) -> str:
    """A digest of ``input`` that does not depend on key order or whitespace."""
    canonical = json.dumps(input, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def check_same_request(existing: RunRecord, requested: RunRecord) -> None:
    """Raise IdempotencyConflict if ``requested`` (the header a start would have created)
    asks for something other than the ``existing`` run its key names."""
    differs = []
    if existing.input_digest is not None and requested.input_digest is not None:
        same_input = existing.input_digest == requested.input_digest
    else:  # a run stored before digests were kept: compare the inputs themselves
        same_input = existing.input == requested.input
    if not same_input:
        differs.append("input")
    if existing.max_steps != requested.max_steps:
        differs.append("max_steps")
    if differs:
        raise IdempotencyConflict(requested.idempotency_key or "", existing.run_id, differs)
