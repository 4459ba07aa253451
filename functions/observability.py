"""Powertools Logger, Metrics and Tracer, set up once and shared by every handler.

- Logger: JSON lines; the service name comes from ``POWERTOOLS_SERVICE_NAME`` and the level
  from ``POWERTOOLS_LOG_LEVEL`` (template.yaml Globals). :func:`log_keys` adds per-record
  keys (``run_id``, ``seq``) in a thread-safe way: the local stack runs handlers in threads.
  :func:`lean_log_context` leaves two of the Lambda context's keys off the hot path's lines.
- Metrics: CloudWatch embedded metric format (EMF) on stdout, namespace from
  ``POWERTOOLS_METRICS_NAMESPACE`` (``Hopgraph`` when unset, as in template.yaml).
  :func:`count` and :func:`milliseconds` add under a lock: Powertools' ``add_metric`` reads,
  then writes back, a metric's values, and the worker applies a batch's records in threads.
- Tracer: X-Ray, only inside Lambda (and unless ``POWERTOOLS_TRACE_DISABLED``), through the
  :func:`traced` decorator. Building a Tracer imports the X-Ray SDK and botocore, about twice
  the import time of boto3 itself, so where tracing is off (tests, the local stack) none is
  built. Only botocore is patched: it is all the handlers call, and patching every module
  Powertools knows would import httpx and friends into the worker at cold start.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

H = TypeVar("H", bound=Callable[..., Any])

DEFAULT_NAMESPACE = "Hopgraph"

logger = Logger()
metrics = Metrics()
if metrics.provider.namespace is None:  # a local run without the template's environment
    metrics.provider.namespace = DEFAULT_NAMESPACE

__all__ = [
    "MetricUnit",
    "count",
    "lean_log_context",
    "log_keys",
    "logger",
    "metrics",
    "milliseconds",
    "traced",
    "tracer",
]


def _tracing_enabled() -> bool:
    # Powertools' own rule (in Lambda, not SAM local, not POWERTOOLS_TRACE_DISABLED), asked
    # without building a Tracer; if a release renames it, build one and let it decide.
    disabled = getattr(Tracer, "_is_tracer_disabled", None)
    return True if disabled is None else not disabled()


tracer: Tracer | None = Tracer(patch_modules=["botocore"]) if _tracing_enabled() else None


def traced(handler: H) -> H:
    """``tracer.capture_lambda_handler`` where tracing is on; the handler itself elsewhere."""
    if tracer is None:
        return handler
    # Powertools types the wrapper as any callable; it has the handler's signature.
    return cast(H, tracer.capture_lambda_handler(handler, capture_response=False))


_metrics_lock = threading.Lock()


def count(name: str, value: float = 1) -> None:
    """Add ``value`` to the counter metric ``name`` of this invocation."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def milliseconds(name: str, value: float) -> None:
    """Record a duration metric ``name`` in milliseconds."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)


@contextmanager
def log_keys(**keys: object) -> Iterator[None]:
    """Put ``keys`` on every log line of this thread inside the block, and only there."""
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(list(keys))


LEFT_OUT_CONTEXT_KEYS = ("function_arn", "function_memory_size")
"""Lambda context keys that Powertools puts on every line and :func:`lean_log_context` takes
off: the invoked ARN repeats the function's name (the version that ran is in the log stream's
name) and the memory size is the template's. About 115 of a hop line's 450 bytes: log
ingestion is priced per byte (benchmarks/cost_per_step.py, the all-in table)."""


def lean_log_context(handler: H) -> H:
    """Under ``logger.inject_lambda_context``: its lines without :data:`LEFT_OUT_CONTEXT_KEYS`
    (``function_name``, ``function_request_id`` and ``cold_start`` stay)."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        logger.remove_keys(list(LEFT_OUT_CONTEXT_KEYS))
        return handler(event, context)

    return cast(H, wrapper)
