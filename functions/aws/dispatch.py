"""Step dispatch: the two ways a hop reaches the worker, both a :class:`engine.ports.StepQueue`.

- :class:`SqsStepQueue` sends the hop to the step queue (the default): SQS holds it durably,
  redelivers it after the visibility timeout, and parks it in the DLQ after maxReceiveCount.
- :class:`LambdaStepQueue` invokes the worker asynchronously with the hop as its payload
  (``Dispatch=lambda``): one request less per step (no receive, no delete), with Lambda's own
  asynchronous retries and OnFailure destination standing in for SQS's redelivery and DLQ.

Errors are not caught: a refused send (or a ``ClientError``, a connection error) propagates
to the caller, whose own message is then retried, which is what the ``StepQueue`` contract
asks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from engine.ports import Hop
from functions.aws.send_group import BATCH_BYTES, BATCH_ENTRIES, SendGroup

if TYPE_CHECKING:  # stub types only when type checking: keeps the import graph small
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef as BatchEntry
else:
    LambdaClient = SQSClient = BatchEntry = Any

SELF_INVOKE_MARKER = "hopgraph"
"""Key of the self-invocation payload that tells the worker it got a hop, not an SQS batch."""


def hop_body(hop: Hop) -> str:
    """The JSON a hop travels as, compact: SQS bills per 64 KB chunk of request."""
    return json.dumps(hop.to_dict(), separators=(",", ":"), default=str)


def self_invoke_payload(
    hop: Hop,
    *,
    delivery_id: str | None = None,
    attempt: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The worker's self-invocation event. ``delivery_id``, ``attempt`` and ``reason`` are set
    only on a redelivery (functions/worker/self_invoke.py): a first delivery takes Lambda's request
    id as its delivery id."""
    payload: dict[str, Any] = {SELF_INVOKE_MARKER: "hop", "hop": hop.to_dict()}
    extra = {"delivery_id": delivery_id, "attempt": attempt, "reason": reason}
    payload.update({key: value for key, value in extra.items() if value is not None})
    return payload


SENDS_AT_ONCE = 8
"""Calls one dispatch makes at once. A map's first window is 100 hops: ten SendMessageBatch
calls, or a hundred asynchronous Invokes, one after the other would hold the request that
starts the run for ten (or a hundred) round trips. Within botocore's default pool of 10
connections per client."""

_Part = TypeVar("_Part")


def send_all(
    send: Callable[[_Part], None], parts: Sequence[_Part], at_once: int = SENDS_AT_ONCE
) -> None:
    """``send`` each part, up to ``at_once`` at a time (1: in order); raises the first error
    once every send has returned (the caller's message is retried, and every hop sent again
    is one the slot checks make harmless). A client of boto3 may be shared by threads."""
    if len(parts) <= 1 or at_once <= 1:
        for part in parts:
            send(part)
        return
    with ThreadPoolExecutor(min(at_once, len(parts)), "dispatch") as pool:
        futures = [pool.submit(send, part) for part in parts]
    for future in futures:
        future.result()


MAX_DELAY_SECONDS = 900
"""SQS's longest DelaySeconds."""

SQS_BATCH_ENTRIES = BATCH_ENTRIES
SQS_BATCH_BYTES = BATCH_BYTES


class Outgoing(NamedTuple):
    """One hop's message: its body, and its run as the message's tenant.

    The step queue is a standard queue, and SQS treats one with ``MessageGroupId`` on its
    messages as a fair queue: when a tenant holds a disproportionate share of the messages
    in flight (a wide map's window), SQS delivers other tenants' messages first, so that
    one run's backlog does not hold up another run's next step. The run is the tenant: the
    unit whose backlog can grow (a map's items), and the one the runs quota bounds per owner.
    A group id decides only the order of delivery; nothing the worker does reads it."""

    body: str
    group: str

    @classmethod
    def of(cls, hop: Hop) -> Outgoing:
        return cls(hop_body(hop), hop.run_id)

    def size(self) -> int:
        return len(self.body.encode())


def _batches(messages: list[Outgoing]) -> list[list[Outgoing]]:
    """``messages`` cut into SendMessageBatch calls: at most ten, and 256 KB in all, each."""
    batches: list[list[Outgoing]] = [[]]
    size = 0
    for message in messages:
        length = message.size()
        if len(batches[-1]) == SQS_BATCH_ENTRIES or (
            batches[-1] and size + length > SQS_BATCH_BYTES
        ):
            batches.append([])
            size = 0
        batches[-1].append(message)
        size += length
    return [b for b in batches if b]


def _entries(messages: list[Outgoing]) -> list[BatchEntry]:
    """A SendMessageBatch's entries, each named by its place in ``messages``."""
    return [
        {"Id": str(i), "MessageBody": body, "MessageGroupId": group}
        for i, (body, group) in enumerate(messages)
    ]


class SqsStepQueue:
    """Sends each hop as one SQS message on the step queue; hops that threads send at the
    same time share SendMessageBatch calls (functions/aws/send_group.py)."""

    def __init__(
        self, queue_url: str, client: SQSClient, sends_at_once: int = SENDS_AT_ONCE
    ) -> None:
        if not queue_url:
            raise ValueError("SqsStepQueue needs the step queue URL (HOPGRAPH_STEP_QUEUE_URL)")
        self.queue_url = queue_url
        self.client = client
        self.sends_at_once = sends_at_once
        self._group = SendGroup(self._send_messages, Outgoing.size)

    def dispatch(self, hop: Hop) -> None:
        """Send ``hop``; returns once SQS accepted it. Raises ``ClientError`` if SQS refused
        the call, SendRefused if it refused the hop in a batch of several. A delayed hop (a
        retry) goes alone, held by SQS for its delay in whole seconds, at most 900 (a hop
        held longer comes early and its worker holds it again: engine/retries.py)."""
        if hop.delay_s > 0:
            delay = min(MAX_DELAY_SECONDS, math.ceil(hop.delay_s))
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=hop_body(hop),
                                     DelaySeconds=delay, MessageGroupId=hop.run_id)  # fmt: skip
            return
        self._group.send(Outgoing.of(hop))

    def _send_messages(self, messages: list[Outgoing]) -> list[str | None]:
        if len(messages) == 1:  # as cheap either way; SendMessage's errors are the plainer
            body, group = messages[0]
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=body,
                                     MessageGroupId=group)  # fmt: skip
            return [None]
        entries = _entries(messages)
        response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        refusals: list[str | None] = [None] * len(messages)
        for failed in response.get("Failed") or []:
            refusals[int(failed["Id"])] = f"{failed.get('Code')}: {failed.get('Message')}"
        return refusals

    def dispatch_batch(self, hops: list[Hop]) -> None:
        """Send a fan-out's hops ten to a SendMessageBatch (SQS's limit per call, and 256 KB
        per request in all: a batch is cut early when its bodies would pass that). Raises if
        any entry failed: the caller's message is retried and its hops sent again, which
        the protocol's slot checks make harmless."""
        send_all(self._send_batch, _batches([Outgoing.of(h) for h in hops]), self.sends_at_once)

    def _send_batch(self, batch: list[Outgoing]) -> None:
        entries = _entries(batch)
        response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            raise RuntimeError(f"SQS refused {len(failed)} of {len(entries)} hops: {failed[0]}")


class LambdaStepQueue:
    """Invokes the worker function asynchronously (InvocationType=Event) with each hop."""

    def __init__(self, function_name: str, client: LambdaClient) -> None:
        if not function_name:
            raise ValueError("LambdaStepQueue needs the worker name (HOPGRAPH_WORKER_FUNCTION)")
        self.function_name = function_name
        self.client = client

    def dispatch(self, hop: Hop) -> None:
        """Hand ``hop`` to Lambda's asynchronous invocation queue; raises ``ClientError``.
        An invocation cannot be delayed: with this carrier the protocol sends no delayed hop
        (the sweeper sends each retry when due, engine/retries.py)."""
        self.invoke(self_invoke_payload(hop))

    def dispatch_batch(self, hops: list[Hop]) -> None:
        """One asynchronous Invoke per hop (the Invoke API has no batch form), several at
        once."""
        send_all(self._invoke_hop, hops)

    def _invoke_hop(self, hop: Hop) -> None:
        self.invoke(self_invoke_payload(hop))

    def redeliver(
        self, hop: Hop, delivery_id: str, attempt: int, reason: str | None = None
    ) -> None:
        """Invoke the worker again for ``hop`` as delivery ``delivery_id``, attempt ``attempt``
        (``reason``: why the hop is being dead-lettered, on the invocation past the limit)."""
        payload = self_invoke_payload(hop, delivery_id=delivery_id, attempt=attempt, reason=reason)
        self.invoke(payload)

    def invoke(self, payload: dict[str, Any]) -> None:
        """Queue one asynchronous invocation of the worker with ``payload``."""
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        response = self.client.invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=body
        )
        # An accepted asynchronous invocation answers 202; anything else did not queue it.
        status = response.get("StatusCode", 202)
        if status != 202:
            raise RuntimeError(f"Lambda did not accept the hop: Invoke answered {status}")
