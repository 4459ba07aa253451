"""What a dead letter of the step queue says, and failing its hop's run with that reason.

Two shapes reach StepDLQ, and each record of the consumer's SQS batch holds one of them:

Hop message (SQS redrive, ``Dispatch=sqs``)
    The step queue moved the message here after ``maxReceiveCount`` receives. The body is the
    hop, exactly as the worker got it. Usually the worker failed the run itself on the last
    receive; it could not if it never ran or was killed: a timeout, running out of memory, an
    init failure (a toolkit module that is not shipped), or Lambda's recursive loop detection,
    which stops the invocation before it starts. SQS keeps the message's ``AWSTraceHeader``,
    whose ``Lineage`` count tells the last cause apart.

Invocation record (the worker's OnFailure destination, ``Dispatch=lambda``)
    Lambda gave up on an asynchronous self-invocation and sent its record::

        {"version": "1.0", "timestamp": "...",
         "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
         "requestPayload": {"hopgraph": "hop", "hop": {...}, "attempt"?, "reason"?},
         "responseContext": {"statusCode", "executedVersion", "functionError"},
         "responsePayload": {"errorType", "errorMessage", ...}}

    ``condition`` is ``RetriesExhausted`` or ``EventAgeExceeded``; ``errorType`` names the
    cause (``Sandbox.Timedout``, ``Runtime.OutOfMemory``, ``Runtime.ImportModuleError``...).

Failing the run is :meth:`RunService.fail_hop`: a failed step in the hop's slot and the run
marked failed in one conditional write, so it is idempotent, and it changes nothing for a run
that is already final or a slot someone else took. A letter for a run or graph that does not
exist is dropped (logged). StepDLQ is the end of the line: a letter that is not one of the two
shapes can never be acted on, so it is logged whole and acknowledged rather than retried for
the two weeks SQS keeps it; any other failure (DynamoDB throttled) is retried.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from engine.errors import InvalidInputError, NotFoundError
from engine.ports import Hop
from engine.service import RunService
from functions.aws.dispatch import SELF_INVOKE_MARKER
from functions.observability import count, log_keys, logger

Outcome = Literal["failed", "unchanged", "unknown", "malformed"]

GIVE_UP_CONDITIONS = frozenset({"RetriesExhausted", "EventAgeExceeded"})
"""The conditions of a Lambda invocation record that gave up on an event."""

RECURSION_LIMIT = 16
"""Lambda stops a chain of invocations of one function after about this many."""

_CAUSES = {
    "Sandbox.Timedout": "the worker ran past its function timeout and was stopped",
    "Runtime.OutOfMemory": "the worker ran out of memory",
    "Runtime.ImportModuleError": "the worker failed to start (a module could not be imported)",
    "Runtime.Unknown": "the worker failed to start",
    "RecursiveInvocationException": (
        "Lambda's recursive loop detection stopped the chain of hops before the worker ran "
        "(the worker must declare RecursiveLoop: Allow)"
    ),
}
_LINEAGE = re.compile(r"(?:^|;)\s*Lineage=([^;]+)")


class MalformedLetter(Exception):
    """A dead letter that names no hop (or a node its graph does not have)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The hop a dead letter carries and why AWS gave up on it."""

    hop: Hop
    cause: str
    given_up_by_aws: bool = True
    """The letter shows AWS's own mark: SQS's ``DeadLetterQueueSourceArn`` on a message it
    moved, or a Lambda invocation record that gave up on the worker. Anyone with send rights
    can put a message on the queue; only AWS puts those there. Without it, the letter fails
    no run (a forgery, or a copy)."""

    @property
    def reason(self) -> str:
        """What the failed run says: which step, that it was dead-lettered, why, and that
        the run can be redriven once the cause is fixed."""
        return (
            f"step {self.hop.seq} (node {self.hop.node!r}) was moved to the dead-letter queue "
            f"without finishing: {self.cause}; once the cause is fixed, redrive the run "
            f"(POST /runs/{self.hop.run_id}/redrive) to run that step again"
        )


# ---------------------------------------------------------------------------- parsing


def parse_letter(record: SQSRecord) -> DeadLetter:
    """The hop in a StepDLQ record, and the cause its shape and attributes tell."""
    try:
        body = json.loads(record.body)
    except ValueError as exc:
        raise MalformedLetter(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedLetter("body is not a JSON object")
    if "requestContext" in body and "requestPayload" in body:
        return _from_invocation_record(body)
    moved = bool(record.attributes.dead_letter_queue_source_arn)
    return DeadLetter(_hop(body), _sqs_cause(record), given_up_by_aws=moved)


def _hop(doc: Any) -> Hop:
    try:
        return Hop.from_dict(doc)
    except InvalidInputError as exc:
        raise MalformedLetter(f"not a hop: {exc}") from None


def _sqs_cause(record: SQSRecord) -> str:
    chain = lineage_count(record.attributes.aws_trace_header)
    if chain is not None and chain >= RECURSION_LIMIT:
        stopped = _CAUSES["RecursiveInvocationException"]
        return f"its trace header counts {chain} invocations in the chain: {stopped}"
    source = record.attributes.dead_letter_queue_source_arn
    queue = f"the queue {source.rsplit(':', 1)[-1]}" if source else "the step queue"
    return (
        f"{queue} gave up on it after its receives ran out, and the worker never got to fail "
        "the run itself: it timed out, ran out of memory or failed to start (see the worker's "
        "logs for this run)"
    )


def _from_invocation_record(body: dict[str, Any]) -> DeadLetter:
    payload = body.get("requestPayload")
    if not isinstance(payload, dict) or payload.get(SELF_INVOKE_MARKER) != "hop":
        raise MalformedLetter("the invocation record's payload is not a self-invoked hop")
    hop = _hop(payload.get("hop"))
    context = body.get("requestContext") or {}
    response = body.get("responsePayload")
    error_type = response.get("errorType") if isinstance(response, dict) else None
    message = response.get("errorMessage") if isinstance(response, dict) else None
    condition = context.get("condition", "a failure")
    gave_up = condition in GIVE_UP_CONDITIONS
    attempts = context.get("approximateInvokeCount")
    given_up = f"Lambda gave up on its asynchronous invocation ({condition}"
    given_up += f" after {attempts} attempts)" if attempts else ")"
    if payload.get("reason"):  # the worker's own account of its last attempt
        return DeadLetter(hop, f"{given_up}: {payload['reason']}", given_up_by_aws=gave_up)
    explained = _CAUSES.get(str(error_type), "")
    detail = ": ".join(str(part) for part in (error_type, message) if part)
    cause = "; ".join(part for part in (explained, detail) if part) or "no error was reported"
    return DeadLetter(hop, f"{given_up}: {cause}", given_up_by_aws=gave_up)


def lineage_count(trace_header: str | None) -> int | None:
    """The invocation count of the ``Lineage`` field of an X-Ray trace header, if any.

    The field is ``Lineage=<hash>:<count>`` (one entry per function; the largest count is the
    one that decides whether Lambda stops the chain)."""
    match = _LINEAGE.search(trace_header or "")
    if match is None:
        return None
    counts = [
        int(entry.rsplit(":", 1)[1])
        for entry in match.group(1).split(",")
        if ":" in entry and _digits(entry.rsplit(":", 1)[1].strip())
    ]
    return max(counts) if counts else None


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


# ---------------------------------------------------------------------------- failing


def fail_run(svc: RunService, letter: DeadLetter) -> Outcome:
    """Fail the letter's run with its reason; idempotent, and final runs are left alone."""
    hop = letter.hop
    with log_keys(run_id=hop.run_id, seq=hop.seq):
        if not letter.given_up_by_aws:
            logger.warning("dead letter without AWS's mark ignored: it fails no run")
            count("DeadLettersIgnored")
            return "unchanged"
        try:
            if hop.node not in svc.graph(hop.graph_id).nodes:
                raise MalformedLetter(f"graph {hop.graph_id!r} has no node {hop.node!r}")
            ended = svc.fail_hop(hop, letter.reason)
        except NotFoundError as exc:  # deleted, or never created: there is nothing to fail
            logger.warning("dead letter for an unknown run dropped", extra={"error": str(exc)})
            count("DeadLettersDropped")
            return "unknown"
        if not ended:
            logger.info(
                "dead letter changes nothing: the run is final, the task committed or may "
                "still run (its slot is younger than the lease)"
            )
            return "unchanged"
        count("RunsFailed")
        logger.error("run failed: hop dead-lettered", extra={"reason": letter.reason})
        return "failed"
