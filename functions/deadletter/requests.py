"""Run requests in the run-requests dead-letter queue: kept readably, and redriven on demand.

Two kinds of letter reach RunRequestsDLQ, and DeadLetterFunction consumes them (its
``ParkedRunRequests`` event) as it consumes the step queue's:

- parked by the starter (:func:`functions.starter.requests.park`): a request that can never
  start a run, sent here at once with the reason in its ``hopgraph_reason`` attribute and
  its own message id in ``source_message_id``;
- moved by the run-requests queue's redrive policy after ``maxReceiveCount`` receives: the
  starter failed it every time (throttled, over an owner's runs-in-flight quota for long, a
  crash); SQS keeps its message id, which the starter's log lines carry.

Each letter is logged as one line (``run request parked``: the reason, owner, graph,
idempotency key and message id) and kept in the table until it is redriven or expires after
the 14 days the queue would have kept it::

    PK=PARKED#run-requests  SK=<parked iso>#<message id>   body, reason, message_id,
                            parked_at, expires_at (TTL), owner?, graph_id?

then acknowledged: a letter sitting in the queue unread is what this replaces. Redrive is a
direct invocation of DeadLetterFunction (README, "Operating hopgraph")::

    {"hopgraph": "redrive_run_requests", "message_ids": [...]?, "limit": 100?}

sends each parked request (those named, else the oldest ``limit``) to the run-requests queue
again and deletes its record. A request without an ``idempotency_key`` is sent with its
original message id as the key, which is the key the starter gave it the first time: a
redrive sent twice (a crash between the send and the delete), or of a request that did start
its run, starts nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.aws import clients
from functions.aws.dynamodb_items import iso
from functions.observability import count, logger
from functions.settings import Settings

PARTITION = "PARKED#run-requests"
KEEP_SECONDS = 14 * 24 * 3600
"""How long a parked request is kept: as long as RunRequestsDLQ keeps a message."""
REDRIVE = "redrive_run_requests"
"""The ``hopgraph`` value of a direct invocation that redrives parked requests."""
REDRIVE_LIMIT = 100
MOVED = (
    "the starter failed it on every receive until the queue's redrive policy moved it "
    "(throttled, over the owner's runs-in-flight quota, or a crash: its log lines under "
    "this message id say which)"
)

_now: Callable[[], float] = time.time
"""The clock parked records are stamped with (tests pin it)."""


def from_run_requests(record: SQSRecord, settings: Settings) -> bool:
    """Does ``record`` come from the run-requests DLQ (rather than the step DLQ)?"""
    url = settings.run_requests_dlq_url
    return bool(url) and record.event_source_arn.rsplit(":", 1)[-1] == url.rsplit("/", 1)[-1]


def keep(record: SQSRecord, settings: Settings) -> str:
    """Log one parked request readably and keep it in the table for a redrive."""
    attributes = record.raw_event.get("messageAttributes") or {}
    reason = _string(attributes, "hopgraph_reason") or MOVED
    message_id = _string(attributes, "source_message_id") or record.message_id
    request = _request_fields(record.body)
    logger.error(
        "run request parked", extra={"reason": reason, "message_id": message_id, **request}
    )
    count("RunRequestsParked")
    now = _now()
    item: dict[str, Any] = {
        "PK": {"S": PARTITION},
        "SK": {"S": f"{iso(now)}#{message_id}"},
        "message_id": {"S": message_id},
        "body": {"S": record.body},
        "reason": {"S": reason},
        "parked_at": {"N": repr(now)},
        "expires_at": {"N": str(int(now) + KEEP_SECONDS)},
    }
    for name in ("owner", "graph_id"):
        if name in request:
            item[name] = {"S": request[name]}
    # A redelivered letter writes the same key again: one record per letter
    clients.client("dynamodb").put_item(TableName=settings.table, Item=item)
    return "parked"


def redrive(event: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Send parked requests to the run-requests queue again (all the event names, else the
    oldest ``limit``); returns how many were sent and whether more are parked."""
    wanted = event.get("message_ids")
    names = {str(m) for m in wanted} if isinstance(wanted, list) else None
    limit = int(event.get("limit") or REDRIVE_LIMIT)
    if not settings.run_requests_queue_url:
        raise RuntimeError("HOPGRAPH_RUN_REQUESTS_QUEUE_URL is not set: cannot redrive")
    sent: list[str] = []
    start: dict[str, Any] | None = None
    while len(sent) < limit:
        page = _parked(settings.table, start)
        for item in page.get("Items", []):
            message_id = item["message_id"]["S"]
            if (names is not None and message_id not in names) or len(sent) >= limit:
                continue
            body = _with_key(item["body"]["S"], message_id)
            clients.client("sqs").send_message(
                QueueUrl=settings.run_requests_queue_url, MessageBody=body
            )
            clients.client("dynamodb").delete_item(
                TableName=settings.table, Key={k: item[k] for k in ("PK", "SK")}
            )
            sent.append(message_id)
            logger.info("run request redriven", extra={"message_id": message_id})
        start = page.get("LastEvaluatedKey")
        if start is None:
            break
    count("RunRequestsRedriven", len(sent))
    more = bool(_parked(settings.table, None, limit=1).get("Items"))
    return {"redriven": sent, "more_parked": more}


def _parked(table: str, start: dict[str, Any] | None, limit: int = 100) -> Any:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk",
        "ExpressionAttributeValues": {":pk": {"S": PARTITION}},
        "Limit": limit,
        "ConsistentRead": True,
    }
    if start is not None:
        kwargs["ExclusiveStartKey"] = start
    return clients.client("dynamodb").query(**kwargs)


def _with_key(body: str, message_id: str) -> str:
    """The request with its first key: the one it had, else its original message id (the
    starter's key for it). A body that is not a JSON object goes as it came."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict) or doc.get("idempotency_key") is not None:
        return body
    return json.dumps({**doc, "idempotency_key": message_id}, separators=(",", ":"))


def _string(attributes: dict[str, Any], name: str) -> str | None:
    value = (attributes.get(name) or {}).get("stringValue")
    return str(value) if value else None


def _request_fields(body: str) -> dict[str, str]:
    """What a log line shows of a request: its owner, graph and key, when they are strings
    of a sensible length (the body may be anything: it was parked for a reason)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        name: value
        for name in ("owner", "graph_id", "idempotency_key")
        if isinstance(value := doc.get(name), str) and 0 < len(value) <= 512
    }
