"""Run events to WebSocket subscribers, through the API Gateway Management API.

Posting is best effort (the Notifier contract): a failed post is logged and swallowed, and a
connection API Gateway reports gone (410) is forgotten. Within one ``publish`` the events
reach each subscriber in order, because one connection's posts are sequential; since the
service publishes a step's events before it dispatches the next hop, a subscriber also sees
one run's steps in order.

Nothing is missed: ``publish`` runs after the step's commit and only then reads the run's
subscribers (strongly consistent), while the subscribe route writes the subscription and only
then reads the committed steps to replay them. Whichever of the two writes comes second, its
writer's read sees the other one, so every step reaches a subscriber live, by replay, or both
(clients dedupe by ``seq``). A subscriber list read earlier (say, while the tool ran) could
miss a subscription made during the step, and that step would reach that client by neither.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from engine.events import MESSAGE_LIMIT, encode, fit
from engine.ports import Connection, RunStore
from functions.aws import clients

log = logging.getLogger("hopgraph.notifier")

MANAGEMENT_API = "apigatewaymanagementapi"
__all__ = ["MESSAGE_LIMIT", "ApiGatewayNotifier", "encode", "error_code", "fit", "post"]


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else).

    Read off the exception rather than caught by class, so this module never imports
    botocore itself: the handlers that import it stay cheap to load."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def management_client(endpoint: str) -> Any:
    """The cached Management API client for one WebSocket API stage endpoint."""
    return clients.client(MANAGEMENT_API, endpoint_url=endpoint)


def post(endpoint: str, connection_id: str, data: bytes) -> bool:
    """Post ``data`` to one connection; False if the connection is gone (410).

    Any other failure raises (the caller decides whether it matters)."""
    try:
        management_client(endpoint).post_to_connection(ConnectionId=connection_id, Data=data)
    except Exception as exc:
        if error_code(exc) == "GoneException":
            return False
        raise
    return True


class ApiGatewayNotifier:
    """A :class:`~engine.ports.Notifier` that posts to API Gateway WebSocket connections.

    ``endpoint`` (``https://{api}.execute-api.{region}.amazonaws.com/{stage}``) is used for
    connections saved without one; each connection normally carries its own.
    """

    def __init__(self, store: RunStore, endpoint: str = "", *, max_workers: int = 8) -> None:
        self.store = store
        self.endpoint = endpoint
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="notify")
        return self._pool

    # -- Notifier ------------------------------------------------------------------------------
    def publish(self, run_id: str, events: list[dict[str, Any]]) -> None:
        """Post ``events`` to every subscriber of ``run_id``; never raises.

        Called after the events' step is committed: the subscribers are read now, not
        earlier, so a client that subscribed while the step ran gets it (module docstring)."""
        try:
            connections = self.store.subscribers(run_id)
            if connections:
                self._post_all(connections, [encode(fit(event)) for event in events])
        except Exception:
            log.exception("publishing events of run %s failed", run_id)

    # -- internals -----------------------------------------------------------------------------
    def _post_all(self, connections: list[Connection], payloads: list[bytes]) -> None:
        if len(connections) == 1:
            self._post_each(connections[0], payloads)
            return
        # One task per connection: its posts stay in order, connections proceed in parallel,
        # and publish returns only when all are done (the next step's events come after).
        futures = [self._executor().submit(self._post_each, c, payloads) for c in connections]
        wait(futures)

    def _post_each(self, connection: Connection, payloads: list[bytes]) -> None:
        endpoint = connection.endpoint or self.endpoint
        if not endpoint:
            log.warning("connection %s has no endpoint to post to", connection.connection_id)
            return
        for data in payloads:
            try:
                if not post(endpoint, connection.connection_id, data):
                    self._forget(connection.connection_id)
                    return
            except Exception as exc:  # throttled, forbidden, unreachable: skip, keep going
                log.warning(
                    "post to connection %s failed (%s)",
                    connection.connection_id,
                    error_code(exc) or type(exc).__name__,
                    exc_info=True,
                )

    def _forget(self, connection_id: str) -> None:
        log.info("connection %s is gone; removing it", connection_id)
        try:
            self.store.delete_connection(connection_id)
        except Exception:
            log.warning("removing gone connection %s failed", connection_id, exc_info=True)
