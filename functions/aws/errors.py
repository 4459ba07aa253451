"""botocore ``ClientError`` -> engine errors, in one function (:func:`raise_store_error`).

Adapters never string-match messages: they catch ``ClientError`` around a call and hand it
here with what a failed condition means for that call (a conflict of their choosing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from botocore.exceptions import ClientError

from engine.errors import TransientStoreError

# Throttling and brief unavailability: the operation may succeed if retried (the hop is
# redelivered, the HTTP client gets a 503). Transaction conflicts are transient too: another
# transaction held one of the items.
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)
# The per-item reasons of a cancelled transaction that are worth a retry.
TRANSIENT_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
CONDITION_FAILED = "ConditionalCheckFailed"


class StoreConfigurationError(RuntimeError):
    """The deployment is wrong (the table does not exist): no retry will help."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def cancellation_reasons(exc: ClientError) -> list[str]:
    """Per-item reason codes of a cancelled transaction, in the order of its items
    (``"None"`` for an item that did not cause the cancellation)."""
    response: Mapping[str, Any] = exc.response
    reasons = response.get("CancellationReasons") or []
    return [str(reason.get("Code", "None")) for reason in reasons]


def raise_store_error(
    exc: ClientError,
    *,
    table: str,
    conflict: Exception | None = None,
    invalid: Exception | None = None,
) -> NoReturn:
    """Raise the engine error ``exc`` stands for; call it inside ``except ClientError``.

    ``conflict``: raised when a condition failed (a plain write's condition, or any item's in
    a cancelled transaction); without it, a failed condition is re-raised as is. ``invalid``:
    raised for a ``ValidationException`` caused by the caller's input (a forged cursor's
    start key). Throttling and unavailability become TransientStoreError, a missing table a
    StoreConfigurationError; anything else is re-raised unchanged.
    """
    code = error_code(exc)
    if code == "ConditionalCheckFailedException" and conflict is not None:
        raise conflict from exc
    if code == "TransactionCanceledException":
        reasons = cancellation_reasons(exc)
        if CONDITION_FAILED in reasons and conflict is not None:
            raise conflict from exc
        if TRANSIENT_REASONS.intersection(reasons):
            raise TransientStoreError(f"DynamoDB transaction cancelled: {reasons}") from exc
    if code in TRANSIENT_CODES:
        raise TransientStoreError(f"DynamoDB is busy ({code}); retry later") from exc
    if code == "ResourceNotFoundException":
        raise StoreConfigurationError(
            f"DynamoDB table {table!r} (or one of its indexes) does not exist: "
            "check HOPGRAPH_TABLE and that the stack is deployed"
        ) from exc
    if code == "ValidationException" and invalid is not None:
        raise invalid from exc
    raise exc
