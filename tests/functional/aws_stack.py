"""The worker and starter handlers over moto: the table and queues of template.yaml, the
settings in the environment, and an emulated SQS event source feeding the real handlers.

``aws_stack(monkeypatch)`` is a context manager yielding an :class:`AwsStack`; the service
the handlers use is the one ``functions.runtime`` builds from the environment (DynamoDB
store, SQS or Lambda dispatch), exactly as in a deployment. moto's DynamoDB and SQS take one
lock per operation, as in the local stack (infra/moto/fidelity.py): the worker applies a
batch's records in threads, and DynamoDB's conditional writes are atomic per item.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from engine.ports import RunRecord, StepRecord
from engine.service import RunService
from functions import runtime
from functions.aws import clients
from functions.settings import get_settings
from infra.moto.dead_letters import dead_letters_marked
from infra.moto.fair_queues import fair_queues
from infra.moto.fidelity import serialize_dynamodb_writes, serialize_sqs
from infra.stack.event_source import SqsEventSource
from infra.stack.lambda_context import LambdaContext
from infra.template.reader import create_queues, create_table

REGION = "us-east-1"
TABLE = "hopgraph-functional"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOOLKITS = (
    "engine.toolkits.code_review,engine.toolkits.basics,engine.toolkits.research,"
    "functions.models.toolkit"
)


def code_review_graph() -> dict[str, Any]:
    return json.loads((EXAMPLES / "code_review.json").read_text())  # type: ignore[no-any-return]


def sample_code() -> str:
    return (EXAMPLES / "sample_code.py").read_text()


@dataclass
class AwsStack:
    sqs: Any
    dynamodb: Any
    urls: dict[str, str]
    """Queue URLs by template logical id (StepQueue, StepDLQ, RunRequestsQueue, ...)."""

    @property
    def service(self) -> RunService:
        return runtime.service()

    def worker_source(self, handler: Any = None, **options: Any) -> SqsEventSource:
        """The step queue feeding the worker; failed messages come back at once."""
        if handler is None:
            from functions.worker.handler import handler
        options.setdefault("failed_visibility", 0)
        return SqsEventSource(self.sqs, self.urls["StepQueue"], handler, **options)

    def starter_source(self, **options: Any) -> SqsEventSource:
        from functions.starter.handler import handler

        options.setdefault("failed_visibility", 0)
        return SqsEventSource(self.sqs, self.urls["RunRequestsQueue"], handler, **options)

    def drain(self, source: SqsEventSource, max_polls: int = 500) -> int:
        """Poll until the queue has nothing visible left; returns the messages handled."""
        handled = 0
        for _ in range(max_polls):
            result = source.poll_once()
            if result.received == 0:
                return handled
            handled += result.received
        raise AssertionError(f"queue still busy after {max_polls} polls")

    def messages(self, logical_id: str) -> list[dict[str, Any]]:
        """Every message now visible in a queue (received with a zero visibility timeout,
        so they stay there)."""
        found: dict[str, dict[str, Any]] = {}
        for _ in range(5):
            reply = self.sqs.receive_message(
                QueueUrl=self.urls[logical_id],
                MaxNumberOfMessages=10,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            for message in reply.get("Messages", []):
                found[message["MessageId"]] = message
        return list(found.values())

    def run(self, run_id: str) -> RunRecord:
        return self.service.store.get_run(run_id)

    def steps(self, run_id: str) -> list[StepRecord]:
        return self.service.store.list_steps(run_id, limit=1000).items


def lambda_context(name: str = "hopgraph-worker", request_id: str | None = None) -> Any:
    return LambdaContext(function_name=name, aws_request_id=request_id or str(uuid.uuid4()))


@contextmanager
def aws_stack(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Iterator[AwsStack]:
    """moto with template.yaml's table and queues, and ``HOPGRAPH_*`` pointing at them.

    ``settings``: extra or overriding ``HOPGRAPH_<NAME>`` values (``dispatch="lambda"``...).
    """
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "hopgraph",
        "POWERTOOLS_METRICS_NAMESPACE": "HopgraphTest",
    }.items():
        monkeypatch.setenv(name, value)
    lock = threading.RLock()
    with ExitStack() as moto:
        moto.enter_context(mock_aws())
        moto.enter_context(dead_letters_marked())
        moto.enter_context(fair_queues())
        moto.enter_context(serialize_dynamodb_writes(lock))
        moto.enter_context(serialize_sqs(lock))
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_table(dynamodb, TABLE)
        urls = create_queues(sqs, {})
        env = {
            "TABLE": TABLE,
            "STEP_QUEUE_URL": urls["StepQueue"],
            "RUN_REQUESTS_DLQ_URL": urls["RunRequestsDLQ"],
            "RUN_REQUESTS_QUEUE_URL": urls["RunRequestsQueue"],
            "DISPATCH": "sqs",
            "WORKER_FUNCTION": "hopgraph-worker",
            "WS_ENDPOINT": "",
            "TOOLKITS": TOOLKITS,
            **{name.upper(): value for name, value in settings.items()},
        }
        for name, value in env.items():
            monkeypatch.setenv(f"HOPGRAPH_{name}", value)
        _rebuild()
        try:
            yield AwsStack(sqs, dynamodb, urls)
        finally:
            _rebuild()


def _rebuild() -> None:
    """Forget the cached settings, clients and service: the next use reads the environment."""
    get_settings.cache_clear()
    clients.reset()
    runtime.install(None)
