"""The composition root: one RunService per process, wired from the settings.

Handlers call :func:`service`; tests and the local stack call :func:`install` to run the
same handlers over other adapters. Adapter modules are imported here, lazily, so a handler
that never dispatches or notifies does not pay for them at cold start.
"""

from __future__ import annotations

import threading

from engine.ports import Notifier, RunStore, StepQueue
from engine.service import EngineConfig, RunService
from engine.tools import Toolkit, load_toolkits
from functions.aws import clients
from functions.settings import Settings, get_settings

_service: RunService | None = None
_lock = threading.Lock()


def service() -> RunService:
    """The process's run service, built on first use from the environment settings."""
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                _service = build_service(get_settings())
    return _service


def install(svc: RunService | None) -> None:
    """Use ``svc`` from now on (``None``: rebuild from the settings on next use)."""
    global _service
    _service = svc


def build_store(settings: Settings) -> RunStore:
    from functions.aws.dynamodb_store import DynamoRunStore

    return DynamoRunStore(settings.table, clients.client("dynamodb"))


def build_queue(settings: Settings) -> StepQueue:
    from functions.aws.dispatch import LambdaStepQueue, SqsStepQueue

    if settings.dispatch == "lambda":
        return LambdaStepQueue(settings.worker_function, clients.client("lambda"))
    return SqsStepQueue(settings.step_queue_url, clients.client("sqs"))


def build_notifier(settings: Settings, store: RunStore) -> Notifier:
    from functions.aws.notifier import ApiGatewayNotifier

    return ApiGatewayNotifier(store, settings.ws_endpoint)


def build_tools(settings: Settings) -> Toolkit:
    return load_toolkits(settings.toolkit_modules)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        default_max_steps=settings.max_steps, state_limit_bytes=settings.state_limit_bytes
    )


def build_service(settings: Settings) -> RunService:
    store = build_store(settings)
    return RunService(
        store,
        build_queue(settings),
        build_tools(settings),
        notifier=build_notifier(settings, store),
        config=engine_config(settings),
    )
