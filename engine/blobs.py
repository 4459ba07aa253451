"""Large values: kept apart from the items that name them, content-addressed, behind a pointer.

A store item (a step's state or delta, a run's input) may not pass DynamoDB's 400 KB. A
state value whose JSON passes :data:`BLOB_ABOVE` bytes is kept as a *blob* (S3 on AWS and on
the local stack) under the SHA-256 of its JSON, and the item holds a pointer in its place::

    {"$blob": "sha256:<hex>", "bytes": <size of the JSON>}

The same value has the same pointer: a value that did not change is never written again
(the writer knows which blobs a run already has), and a pointer reads back the value it was
made from or nothing. Readers see values, never pointers: the store swaps them back
(:func:`restore`). What users see of a large value in the execution log, events and API
replies is a summary with its pointer and where to fetch it (:func:`summary`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

BLOB_ABOVE = 64 * 1024
"""A state value whose JSON is larger than this (bytes) is kept as a blob. Four such values
and the rest of a step stay well inside an item; smaller ones are cheaper in the item (an S3
request costs more than the write units of 64 KB)."""

MAX_STATE_BYTES = 16 * 1024 * 1024
"""The hard limit of a run's state (its JSON) once large values are blobs: a worker holds a
few copies of it in memory (the Lambda's 1,024 MB are far away), and reading it back whole
still fits one HTTP API reply of 10 MB only through summaries (:func:`summary`)."""

POINTER = "$blob"
POINTER_BYTES = 100
"""About what a pointer takes in an item (its JSON, with a 64-digit digest)."""


class BlobStore(Protocol):
    """Where blobs live (S3 on AWS: ``functions/aws/s3_blobs.py``). Keys are
    ``runs/<run id>/<digest>``, so that a run's blobs expire with its retention."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (an overwrite writes the same bytes)."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; KeyError if there are none (expired)."""


def encoded(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def key_of(run_id: str, digest: str) -> str:
    return f"runs/{run_id}/{digest.removeprefix('sha256:')}"


def is_pointer(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {POINTER, "bytes"}


def pointer(digest: str, size: int) -> dict[str, Any]:
    return {POINTER: digest, "bytes": size}


def stash(values: Mapping[str, Any], run_id: str, blobs: BlobStore, known: set[str],
          above: int = BLOB_ABOVE) -> dict[str, Any]:  # fmt: skip
    """``values`` with each value larger than ``above`` put in ``blobs`` and replaced by its
    pointer. ``known``: digests the run already has (not written again; updated)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str | list | dict) and not is_pointer(value):
            data = encoded(value)
            if len(data) > above:
                digest = digest_of(data)
                if digest not in known:
                    blobs.put(key_of(run_id, digest), data)
                    known.add(digest)
                out[key] = pointer(digest, len(data))
                continue
        out[key] = value
    return out


def restore(values: Mapping[str, Any], run_id: str, fetch: Callable[[str], Any]
            ) -> dict[str, Any]:  # fmt: skip
    """``values`` with each pointer replaced by its value (``fetch(key)``)."""
    if not any(is_pointer(v) for v in values.values()):
        return dict(values)
    return {k: fetch(key_of(run_id, v[POINTER])) if is_pointer(v) else v for k, v in values.items()}


def summary(values: Mapping[str, Any], run_id: str, above: int = BLOB_ABOVE) -> dict[str, Any]:
    """``values`` as the log, events and API replies show them: each value larger than
    ``above`` replaced by its pointer and the API route that returns it."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        data = encoded(value) if isinstance(value, str | list | dict) else b""
        if len(data) > above:
            digest = digest_of(data)
            out[key] = {**pointer(digest, len(data)),
                        "href": f"/runs/{run_id}/values/{digest}"}  # fmt: skip
        else:
            out[key] = value
    return out
