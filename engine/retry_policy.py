"""What a node does when its tool fails: retry (LangGraph's ``RetryPolicy``), time out, and
route on error (Step Functions' ``Catch``). The graph's declarations, read and checked once
at creation; :mod:`engine.retries` applies them to a run.

A node declares, and a graph's ``defaults`` give every node that does not::

    "retry": {"max_attempts": 3, "initial_interval_s": 0.5, "backoff": 2.0,
              "max_interval_s": 128, "jitter": true, "retry_on": ["ConnectionError"]},
    "timeout_s": 20,
    "on_error": "apologise"

- ``retry``: LangGraph's defaults, key for key. Attempt n fails, and attempt n+1 starts
  ``min(max_interval_s, initial_interval_s * backoff ** (n - 1))`` seconds later, plus up to
  one second of jitter (LangGraph's ``random.uniform(0, 1)``; here derived from the task and
  the attempt, so that every copy of a duplicated hop computes the same time). ``retry_on``
  names exception types, matched against the whole class hierarchy of what the tool raised
  (``"OSError"`` retries a ``ConnectionRefusedError``); without it, LangGraph's
  ``default_retry_on``: every exception but ``ValueError``, ``TypeError``,
  ``ArithmeticError``, ``ImportError``, ``LookupError``, ``NameError``, ``SyntaxError``,
  ``RuntimeError``, ``ReferenceError``, ``StopIteration``, ``StopAsyncIteration`` and
  ``OSError`` (so not ``TimeoutError`` either: name it to retry it), except that a
  ``ConnectionError`` is retried, and an HTTP error (httpx, requests) only for a 5xx status.
  A model error (:class:`engine.messages.ModelError`) says itself whether it is worth
  retrying: throttling (Bedrock's ``ThrottlingException``, an HTTP 429), a 5xx, a timeout or
  a dropped connection is; a bad request, a validation error or access denied never is, not
  even under a ``retry_on`` that names ``ModelError`` (it would fail the same way again).
  ``retry_on`` may also name a provider's error code (``"ThrottlingException"``) to retry
  that error alone.
  Model nodes (``llm``, ``agent``) retry by default (:data:`MODEL_RETRY`).
- ``timeout_s``: per attempt. An async tool is cancelled at its deadline; a sync tool cannot
  be stopped, so its late result is discarded and the attempt fails with ``TimeoutError``
  (whatever side effects it goes on to make still happen: key them on
  ``ctx.idempotency_key``). It must fit in the worker's function timeout minus the commit
  margin (:data:`COMMIT_MARGIN_S`). On a subgraph node it bounds each child run instead (no
  worker waits for it, so no ceiling; a graph's ``defaults`` do not give it one):
  :mod:`engine.subgraph_timeouts`.
- ``on_error``: once retries are spent (or the error is not retried), the run goes to that
  node instead of failing, with the error under the state key :data:`ERROR_KEY`:
  ``{"node", "task", "type", "message", "attempts"}``.

Only a tool's own failure is retried; an engine error (an unknown tool, a branch that matched
nothing) would fail the same way again, and fails at once (or takes the error route). A
subgraph node's child run that failed is its task's failure (``SubgraphFailed``,
:mod:`engine.subgraphs`), and so is one that outlived its node's ``timeout_s``
(``TimeoutError``): a retry runs a new child.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.messages import model_error

ERROR_KEY = "error"
"""The state key an error route writes the error under."""

COMMIT_MARGIN_S = 5.0
"""What a worker keeps of its function timeout after a tool's deadline: the commit, the
events and the dispatch."""

MAX_ATTEMPTS_CEILING = 100
MAX_INTERVAL_CEILING_S = 86_400.0

NOT_RETRIED_BY_DEFAULT = frozenset({
    "ValueError", "TypeError", "ArithmeticError", "ImportError", "LookupError", "NameError",
    "SyntaxError", "RuntimeError", "ReferenceError", "StopIteration", "StopAsyncIteration",
    "OSError",
})  # fmt: skip
"""LangGraph's ``default_retry_on`` refuses these (and their subclasses)."""


@dataclass(frozen=True, slots=True)
class Raised:
    """What a tool raised, as a retry policy needs it: the names of its class and of every
    class above it, and what LangGraph's ``default_retry_on`` says of it."""

    types: tuple[str, ...]
    default_retry: bool
    never: bool = False
    """A model error that says it is not worth retrying (a bad request): no policy retries
    it."""
    at_least_s: float = 0.0
    """How long the provider asked to wait before a retry (``Retry-After``)."""

    @property
    def type(self) -> str:
        return self.types[0] if self.types else "Exception"


def raised_from(exc: BaseException) -> Raised:
    """The :class:`Raised` of a tool's exception."""
    types = _names(exc)
    model = model_error(exc)
    if model is not None and model is not exc:  # a tool's own error wrapping a model's
        types += tuple(n for n in _names(model) if n not in types)
    if model is not None:
        if model.code.isidentifier() and model.code not in types:
            types += (model.code,)  # retry_on may name it: ["ThrottlingException"]
        wait = model.retry_after_s or 0.0
        return Raised(types, model.retryable, never=not model.retryable, at_least_s=wait)
    return Raised(types, _default_retry(exc, types))


def _names(exc: BaseException) -> tuple[str, ...]:
    return tuple(c.__name__ for c in type(exc).__mro__ if c not in (object, BaseException))


def _default_retry(exc: BaseException, types: tuple[str, ...]) -> bool:
    """LangGraph's ``default_retry_on``, by class names (httpx and requests are not imported)."""
    if "ConnectionError" in types:
        return True
    if "HTTPStatusError" in types or ("HTTPError" in types and "OSError" in types):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return not isinstance(status, int) or 500 <= status < 600
    return not NOT_RETRIED_BY_DEFAULT.intersection(types)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """LangGraph's ``RetryPolicy``, its defaults included (``backoff``: its
    ``backoff_factor``; ``retry_on``: exception type names, ``None`` for the default)."""

    max_attempts: int = 3
    initial_interval_s: float = 0.5
    backoff: float = 2.0
    max_interval_s: float = 128.0
    jitter: bool = True
    retry_on: tuple[str, ...] | None = None

    def retries(self, raised: Raised | None) -> bool:
        """Whether a failure that raised ``raised`` is retried (``None``: an engine error,
        never)."""
        if raised is None or raised.never:
            return False
        if self.retry_on is None:
            return raised.default_retry
        return any(name in raised.types for name in self.retry_on)

    def interval(self, attempt: int, seed: str) -> float:
        """Seconds between the failure of attempt ``attempt`` and the start of the next one;
        the jitter is derived from ``seed`` (the task and the attempt), so every copy of a
        hop agrees on it."""
        base = min(self.max_interval_s, self.initial_interval_s * self.backoff ** (attempt - 1))
        if not self.jitter:
            return base
        digest = hashlib.sha256(seed.encode()).digest()
        return base + int.from_bytes(digest[:4], "big") / 2**32

    def delay(self, attempt: int, seed: str, raised: Raised | None) -> float:
        """Seconds before the attempt after ``attempt``: :meth:`interval`, or longer when the
        provider asked for longer (``Retry-After``), never above ``max_interval_s``."""
        asked = min(raised.at_least_s, self.max_interval_s) if raised is not None else 0.0
        return max(self.interval(attempt, seed), asked)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "max_attempts": self.max_attempts,
            "initial_interval_s": self.initial_interval_s,
            "backoff": self.backoff,
            "max_interval_s": self.max_interval_s,
            "jitter": self.jitter,
        }
        if self.retry_on is not None:
            doc["retry_on"] = list(self.retry_on)
        return doc


MODEL_RETRY = RetryPolicy(
    max_attempts=4,
    initial_interval_s=1.0,
    backoff=2.0,
    max_interval_s=60.0,
    jitter=True,
    retry_on=("ModelError",),
)
"""What a model node (``llm``, ``agent``) retries when neither it nor its graph's ``defaults``
say: a model error worth retrying (throttling, a 5xx, a timeout), three times, 1, 2 and 4
seconds later (plus jitter), each a delayed hop. LangGraph retries no node by default; the
chat models it calls retry in their client (the OpenAI SDK twice on a 408, 409, 429 or 5xx,
with backoff; boto3's retry modes for Bedrock), sleeping in the process. Here a worker must
not sleep: the same retries are the node's retry policy."""


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """A node's ``retry``, ``timeout_s`` and ``on_error``, its graph's defaults applied."""

    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    on_error: str | None = None


NO_FAILURE_POLICY = FailurePolicy()

Report = Callable[[str, str], None]
"""Where a problem goes: (location, message)."""


def read_retry(spec: Any, loc: str, report: Report) -> RetryPolicy | None:
    """A ``retry`` object as written, checked; problems go to ``report`` with their place.
    ``true`` means LangGraph's defaults."""
    if spec is True:
        return RetryPolicy()
    if not isinstance(spec, Mapping):
        report(loc, 'must be an object such as {"max_attempts": 3} (or true for the defaults)')
        return None
    ok = True

    def number(key: str, low: float, high: float, default: float, integer: bool = False) -> float:
        nonlocal ok
        value = spec.get(key, default)
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            what = "an integer" if integer else "a number"
            report(f"{loc}.{key}", f"must be {what} from {low:g} to {high:g}")
            ok = False
            return default
        return value

    attempts = int(number("max_attempts", 1, MAX_ATTEMPTS_CEILING, 3, integer=True))
    initial = number("initial_interval_s", 0, MAX_INTERVAL_CEILING_S, 0.5)
    backoff = number("backoff", 1, 100, 2.0)
    ceiling = number("max_interval_s", 0, MAX_INTERVAL_CEILING_S, 128.0)
    jitter = spec.get("jitter", True)
    if not isinstance(jitter, bool):
        report(f"{loc}.jitter", "must be true or false")
        ok = False
    retry_on = _retry_on(spec.get("retry_on"), f"{loc}.retry_on", report)
    if "retry_on" in spec and retry_on is None:
        ok = False
    if not ok:
        return None
    return RetryPolicy(attempts, float(initial), float(backoff), float(ceiling), bool(jitter),
                       retry_on)  # fmt: skip


def _retry_on(value: Any, loc: str, report: Report) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        report(loc, 'must list exception type names, such as ["ConnectionError", "TimeoutError"]')
        return None
    return tuple(names)


def read_timeout(value: Any, loc: str, ceiling: float | None, report: Report) -> float | None:
    """A ``timeout_s`` as written, checked against ``ceiling`` (the worker's function
    timeout minus :data:`COMMIT_MARGIN_S`; ``None``: no ceiling, in process)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        report(loc, "must be a number of seconds above 0")
        return None
    if ceiling is not None and value > ceiling:
        report(loc, f"{value:g} s does not fit in the worker: its function timeout leaves "
               f"{ceiling:g} s to a tool once the commit's {COMMIT_MARGIN_S:g} s margin is kept "
               "(raise the worker's Timeout, or lower timeout_s)")  # fmt: skip
        return None
    return float(value)


def failure_doc(policy: FailurePolicy) -> dict[str, Any]:
    """The canonical form of a node's failure handling (its keys in the node's object)."""
    doc: dict[str, Any] = {}
    if policy.retry is not None:
        doc["retry"] = policy.retry.to_dict()
    if policy.timeout_s is not None:
        doc["timeout_s"] = policy.timeout_s
    if policy.on_error is not None:
        doc["on_error"] = policy.on_error
    return doc
