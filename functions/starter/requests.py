"""Run requests from the run-requests queue: validation, starting, and parking the malformed.

A request is ``{"graph_id", "input", "owner", "idempotency_key"?, "max_steps"?}``, a JSON
document that follows the rule of every client document (:mod:`engine.json_rules`).
``owner`` is the user the run belongs to (a token's ``sub``): whoever may send to the queue
is trusted by IAM to name it, and the graph must be one that user may see, as over HTTP.
What happens to a request that fails is the queue disposition of its error in the one error
table (:mod:`engine.errors`):

- ``park``: it can never start a run (not JSON, nested too deep, wrong fields, no owner, an
  unknown graph or another owner's, a bad ``max_steps``, an input the engine refuses, an
  idempotency key already used for another request). It is sent at once to the run-requests
  DLQ with the reason as a message attribute and acknowledged, instead of being received
  four more times before SQS's redrive policy gives up on it.
- ``drop``: acknowledged and logged; there is nothing left to do for it.
- ``retry`` (throttling, a network error, anything unforeseen): only its own record fails,
  and SQS redelivers it.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from engine import json_rules
from engine.errors import GraphNotFound, InvalidJsonError, JsonRuleError, transport_of
from engine.validation import MAX_STEPS_CEILING
from functions import quotas, runtime
from functions.aws import clients
from functions.observability import count, log_keys, logger
from functions.settings import get_settings

REASON_ATTRIBUTE = "hopgraph_reason"
"""Message attribute that says why a request was dead-lettered."""
_MAX_REASON = 1_000
MAX_OWNER_LENGTH = 256
NO_OWNER = 'owner: missing; every run belongs to someone: name the user (a token\'s "sub")'


class RunRequest(BaseModel):
    """The body of a run-requests queue message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    graph_id: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    input: dict[str, Any]
    owner: Annotated[StrictStr, Field(min_length=1, max_length=MAX_OWNER_LENGTH)]
    idempotency_key: Annotated[StrictStr, Field(min_length=1, max_length=512)] | None = None
    max_steps: Annotated[StrictInt, Field(gt=0, le=MAX_STEPS_CEILING)] | None = None


class MalformedRequest(Exception):
    """The request can never start a run; ``reason`` says why, for a person to act on."""


def parse_request(body: str) -> RunRequest:
    try:
        doc = json_rules.loads(body)
    except InvalidJsonError as exc:
        raise MalformedRequest(f"body is not JSON: {exc}") from None
    except JsonRuleError as exc:
        raise MalformedRequest(f"invalid run request: {exc}") from None
    try:
        return RunRequest.model_validate(doc)
    except ValidationError as exc:
        raise MalformedRequest(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = [
        NO_OWNER
        if err["type"] == "missing" and err["loc"] == ("owner",)
        else f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()
    ]
    return "invalid run request: " + "; ".join(problems)


def start_requested_run(record: SQSRecord) -> str:
    """Powertools record handler: start the run a message asks for (idempotently)."""
    try:
        request = parse_request(record.body)
        with log_keys(graph_id=request.graph_id):
            return _start(request, record.message_id)
    except MalformedRequest as exc:
        park(record, str(exc))
        return "malformed"
    except Exception as exc:
        disposition = transport_of(exc).disposition
        if disposition == "park":  # the same request would fail the same way every time
            park(record, str(exc))
            return "malformed"
        if disposition == "drop":
            logger.info("run request dropped", extra={"reason": str(exc)})
            return "dropped"
        # Transient (throttling, a network error): this record fails, SQS redelivers it.
        logger.exception("run request failed; retried", extra={"message_id": record.message_id})
        count("RunRequestsRetried")
        raise


def _start(request: RunRequest, message_id: str) -> str:
    # Without a client key the message id is the key: a redelivered request (the starter
    # crashed after start_run, before the acknowledgement) finds its run instead of
    # starting a second one.
    key = request.idempotency_key or message_id
    service = runtime.service()
    if service.store.get_graph(request.graph_id).owner != request.owner:
        raise GraphNotFound(request.graph_id)  # another owner's graph does not exist for them
    # At the quota the request is retried (QuotaExceeded: "retry"), so it starts once runs end.
    quotas.check_runs_in_flight(service, request.owner, get_settings())
    run, created = service.start_run(
        request.graph_id,
        request.input,
        idempotency_key=key,
        max_steps=request.max_steps,
        owner=request.owner,
    )
    with log_keys(run_id=run.run_id):
        logger.info("run requested", extra={"run_created": created, "status": run.status})
    count("RunsStarted" if created else "RunRequestsDuplicate")
    return run.run_id


def park(record: SQSRecord, reason: str) -> None:
    """Send a malformed request to the run-requests DLQ with ``reason``; the caller acks it.

    Raises if the DLQ is not configured or refuses the message, so the record fails and SQS
    keeps it (its redrive policy parks it after maxReceiveCount receives): never lost."""
    logger.error("malformed run request", extra={"reason": reason, "message_id": record.message_id})
    count("MalformedRunRequests")
    dlq_url = get_settings().run_requests_dlq_url
    if not dlq_url:
        raise RuntimeError("HOPGRAPH_RUN_REQUESTS_DLQ_URL is not set: cannot park the request")
    attributes = {
        REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:_MAX_REASON]},
        "source_message_id": {"DataType": "String", "StringValue": record.message_id},
    }
    clients.client("sqs").send_message(
        QueueUrl=dlq_url, MessageBody=record.body, MessageAttributes=attributes
    )
