"""What Lambda does around each invocation, emulated for the local event sources and Invoke.

Two of Lambda's behaviours decide whether a hopgraph run finishes, and both are read from the
function's settings in template.yaml (:class:`FunctionSettings`):

Recursive loop detection (``RecursiveLoop``)
    Lambda counts, in the ``Lineage`` field of the X-Ray trace header, how many invocations of
    a function one chain of events has caused. An SDK call the function makes carries its
    invocation's trace header (botocore's ``add_recursion_detection_header`` copies
    ``_X_AMZN_TRACE_ID`` into ``X-Amzn-Trace-Id``); an SQS message keeps it as its
    ``AWSTraceHeader`` attribute, an asynchronous Invoke as the invocation's own header. When
    the next invocation would be past :data:`LINEAGE_LIMIT` in its chain and the function does
    not declare ``RecursiveLoop: Allow``, Lambda does not run it: an SQS message goes back to
    its queue (and to the DLQ after ``maxReceiveCount`` receives), an asynchronous event goes
    to the on-failure destination.

Timeout (``Timeout``)
    An invocation that overruns is killed: none of its error handling runs and nothing it does
    afterwards happens. Threads cannot be killed, so an expired invocation is stopped at its
    next AWS call (:class:`InvocationTimedOut`, a ``BaseException`` that no handler catches),
    and a result returned after the deadline is discarded.

The current invocation is kept in a context variable, because the local stack runs several
invocations at once in one process (one per thread), where Lambda's runtime has one per
process and keeps the trace header in the environment, seen by every thread. A handler that
hands work to threads in a copy of its context (``asyncio.to_thread``, or a thread pool
through ``contextvars.copy_context().run``, as the SQS worker does) keeps its invocation
there too. :func:`instrument` registers the hooks that act on it on boto3 clients.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from functions.aws import send_group
from infra.stack.lambda_context import LambdaContext
from infra.template.reader import FunctionDefinition

LINEAGE_LIMIT = 16
"""Lambda stops a chain after about 16 invocations of the same function."""

_LINEAGE = re.compile(r"(?:^|;)\s*Lineage=([^;]*)")
_TRACE_HEADER = "X-Amzn-Trace-Id"


class InvocationTimedOut(BaseException):
    """The invocation ran past its function's timeout: Lambda has killed it."""


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    """What Lambda needs to know of a function to invoke it the way template.yaml says."""

    name: str
    timeout_s: float = 30.0
    memory_mb: int = 256
    recursive_loop: str = "Terminate"
    max_retry_attempts: int = 2

    @classmethod
    def from_template(cls, name: str, definition: FunctionDefinition) -> FunctionSettings:
        return cls(
            name=name,
            timeout_s=float(definition["timeout"]),
            memory_mb=definition["memory_size"],
            recursive_loop=definition["recursive_loop"],
            max_retry_attempts=definition["max_retry_attempts"],
        )

    @property
    def lineage_id(self) -> str:
        """This function's key in the ``Lineage`` field (a short hash of its name)."""
        return hashlib.sha256(self.name.encode()).hexdigest()[:8]

    def chain_length(self, trace_header: str | None) -> int:
        """How many invocations of this function the chain of ``trace_header`` has caused."""
        match = _LINEAGE.search(trace_header or "")
        for entry in match.group(1).split(",") if match else ():
            key, _, value = entry.strip().rpartition(":")
            if key == self.lineage_id and value.isascii() and value.isdigit():
                return int(value)
        return 0

    def stops(self, chain_length: int) -> bool:
        """Would Lambda refuse to run the next invocation of a chain this long?"""
        return self.recursive_loop != "Allow" and chain_length >= LINEAGE_LIMIT


@dataclass
class Invocation:
    """One running invocation: its context, its place in its chain, and its deadline."""

    function: FunctionSettings
    chain: int
    """1 for an invocation no earlier invocation of this function caused."""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    root: str = field(default_factory=lambda: f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")
    context: LambdaContext = field(init=False)

    def __post_init__(self) -> None:
        self.context = LambdaContext(
            function_name=self.function.name,
            aws_request_id=self.request_id,
            memory_limit_in_mb=self.function.memory_mb,
            timeout_s=self.function.timeout_s,
        )

    @property
    def trace_header(self) -> str:
        """The header this invocation's AWS calls carry."""
        return f"Root={self.root};Sampled=0;Lineage={self.function.lineage_id}:{self.chain}"

    @property
    def expired(self) -> bool:
        return self.context.get_remaining_time_in_millis() <= 0


_current: ContextVar[Invocation | None] = ContextVar("hopgraph_invocation", default=None)


def current() -> Invocation | None:
    """The invocation running in this thread (or context copied from it), if any."""
    return _current.get()


@contextmanager
def running(invocation: Invocation) -> Iterator[Invocation]:
    token = _current.set(invocation)
    try:
        yield invocation
    finally:
        _current.reset(token)


def invoke(invocation: Invocation, handler: Callable[[Any, Any], Any], event: Any) -> Any:
    """Call ``handler`` as Lambda runs an invocation: raises :class:`InvocationTimedOut` if it
    overran its timeout, whether it was stopped at an AWS call or returned late."""
    with running(invocation):
        result = handler(event, invocation.context)
    if invocation.expired:
        raise InvocationTimedOut(timed_out_message(invocation))
    return result


def timed_out_message(invocation: Invocation) -> str:
    return (
        f"{invocation.request_id} Task timed out after {invocation.function.timeout_s:.2f} seconds"
    )


def longest_chain(function: FunctionSettings, trace_headers: Iterable[str | None]) -> int:
    """The longest chain among the events of one invocation (an SQS batch has several)."""
    return max((function.chain_length(h) for h in trace_headers), default=0)


# ---------------------------------------------------------------------------- boto3 hooks


def instrument(*clients: Any) -> None:
    """Make ``clients``' calls behave as from inside the running invocation (if any): carry
    its trace header, and fail once it has timed out. Idempotent. Hops sent together share a
    SendMessageBatch only within one invocation, as in Lambda (functions/aws/send_group.py)."""
    send_group.partition_by(_trace_header)
    for client in clients:
        events = client.meta.events
        events.register("before-call", _before_call, unique_id="hopgraph-local-invocation")
        for operation in ("SendMessage", "SendMessageBatch"):
            events.register(
                f"provide-client-params.sqs.{operation}",
                _sqs_trace_attribute,
                unique_id=f"hopgraph-local-trace-{operation}",
            )


def _before_call(params: dict[str, Any], **_: Any) -> None:
    invocation = current()
    if invocation is None:
        return
    if invocation.expired:
        raise InvocationTimedOut(timed_out_message(invocation))
    params["headers"].setdefault(_TRACE_HEADER, invocation.trace_header)


def _trace_header() -> str | None:
    invocation = current()
    return None if invocation is None else invocation.trace_header


def _sqs_trace_attribute(params: dict[str, Any], **_: Any) -> None:
    # SQS keeps the sender's X-Amzn-Trace-Id as the message's AWSTraceHeader; moto does not
    # read the header, so the attribute is set explicitly (the API allows it, and it is the
    # same value).
    invocation = current()
    if invocation is None:
        return
    attribute = {"AWSTraceHeader": {"DataType": "String", "StringValue": invocation.trace_header}}
    for message in params.get("Entries", [params]):
        message.setdefault("MessageSystemAttributes", attribute)
