"""The composition root: one RunService per process, wired from the settings.

Handlers call :func:`service`; tests and the local stack call :func:`install` to run the
same handlers over other adapters. Adapter modules are imported here, lazily, so a handler
that never dispatches or notifies does not pay for them at cold start.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from functions.aws import clients
from functions.settings import Settings, get_settings

if TYPE_CHECKING:  # the WebSocket handler needs only the store: keep its cold start small
    from engine.ports import Notifier, RunStore, StepQueue
    from engine.service import EngineConfig, RunService
    from engine.tools import Toolkit

_service: RunService | None = None
_store: RunStore | None = None
_lock = threading.Lock()


def service() -> RunService:
    """The process's run service, built on first use from the environment settings."""
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                _service = build_service(get_settings())
    return _service


def store() -> RunStore:
    """The run store alone: the installed service's, else one built from the settings.

    For handlers that read and write connections and runs but never run a step."""
    global _store
    if _service is not None:
        return _service.store
    if _store is None:
        with _lock:
            if _store is None:
                _store = build_store(get_settings())
    return _store


def install(svc: RunService | None) -> None:
    """Use ``svc`` from now on (``None``: rebuild from the settings on next use)."""
    global _service, _store
    _service = svc
    _store = None


def build_store(settings: Settings) -> RunStore:
    from functions.aws.dynamodb_store import DynamoRunStore

    blob_store = None
    if settings.bucket:
        from functions.aws.s3_blobs import S3BlobStore

        blob_store = S3BlobStore(settings.bucket, clients.client("s3"))
    return DynamoRunStore(
        settings.table, clients.client("dynamodb"), blob_store=blob_store,
        retention_s=settings.retention_days * 86_400,
    )  # fmt: skip


def build_queue(settings: Settings) -> StepQueue:
    from functions.aws.dispatch import LambdaStepQueue, SqsStepQueue

    if settings.dispatch == "lambda":
        return LambdaStepQueue(settings.worker_function, clients.client("lambda"))
    return SqsStepQueue(settings.step_queue_url, clients.client("sqs"))


def build_notifier(settings: Settings, store: RunStore) -> Notifier:
    from functions.aws.notifier import ApiGatewayNotifier

    return ApiGatewayNotifier(store, settings.ws_endpoint)


def build_tools(settings: Settings) -> Toolkit:
    from engine.tools import load_toolkits

    return load_toolkits(settings.toolkit_modules)


def engine_config(settings: Settings) -> EngineConfig:
    from engine.retry_policy import COMMIT_MARGIN_S
    from engine.service import EngineConfig

    return EngineConfig(
        default_max_steps=settings.max_steps,
        state_limit_bytes=settings.effective_state_limit,
        map_window=settings.map_window,
        lease_s=settings.lease_seconds,
        max_map_width=settings.quota_map_width,
        owner_runs_in_flight=settings.quota_runs_in_flight,
        sweeper_delays=settings.dispatch == "lambda",
        # The lease is twice the worker's Timeout (template.yaml); a tool's deadline must
        # leave the commit its margin within that Timeout.
        timeout_ceiling_s=max(0.0, settings.lease_seconds / 2 - COMMIT_MARGIN_S)
        if settings.lease_seconds > 0
        else None,
    )


def build_service(settings: Settings) -> RunService:
    from engine.service import RunService
    from engine.streams import channel

    store = build_store(settings)
    notifier = build_notifier(settings, store)
    # a streaming model node's tokens, to the run's subscribers (read every few seconds)
    channel.bind(notifier.publish, store.subscribers)
    return RunService(
        store,
        build_queue(settings),
        build_tools(settings),
        notifier=notifier,
        config=engine_config(settings),
    )
