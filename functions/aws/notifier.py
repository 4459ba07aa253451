"""Run events to WebSocket subscribers, through the API Gateway Management API.

Posting is best effort (the Notifier contract): a failed post is logged and swallowed, and a
connection API Gateway reports gone (410) is forgotten. Within one ``publish`` the events
reach each subscriber in order, because one connection's posts are sequential; since the
service publishes a step's events before it dispatches the next hop, a subscriber also sees
one run's steps in order.

Nothing is missed, though the subscribers of a step are read while its tool runs, before
its commit (with the hop's slot, off the path between two commits; engine.ports.Audience).
The subscribe route writes the subscription (at w), replays the committed steps (its last
read at q), then records the last seq it replayed, L. A step k reaches that client neither
live nor by replay only if k's worker read the subscribers before w and committed after q;
then every step up to k-1 committed before q (so L = k-1), and the worker of k+1, which
reads after k's commit, sees the subscription. So the publisher of step k+1 posts step k
first to every subscriber that step k's record does not list as notified and whose L is k-1
(or not recorded yet, to be safe), and a run's last step, which has no next publisher, reads
its subscribers after its commit. Clients dedupe by ``seq``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from engine.events import MESSAGE_LIMIT, encode, fit, logged_step_event
from engine.ports import Audience, Connection, RunStore
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
    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None:
        """Post ``events`` to every subscriber of ``run_id``, after ``audience.previous`` to
        those who may have missed it (:class:`~engine.ports.Audience`); never raises."""
        audience = audience or Audience()
        try:
            if audience.subscribers is None:
                connections: Sequence[Connection] = self.store.subscribers(run_id)
            else:
                connections = audience.subscribers
            if not connections:
                return
            payloads = [encode(fit(event)) for event in events]
            missed = {c.connection_id for c in connections if audience.missed_previous(c)}
            previous = []
            if missed and audience.previous is not None:
                previous = [encode(fit(logged_step_event(audience.previous)))]
            self._post_all(
                [(c, previous + payloads if c.connection_id in missed else payloads)
                 for c in connections]
            )  # fmt: skip
        except Exception:
            log.exception("publishing events of run %s failed", run_id)

    # -- internals -----------------------------------------------------------------------------
    def _post_all(self, posts: list[tuple[Connection, list[bytes]]]) -> None:
        if len(posts) == 1:
            self._post_each(*posts[0])
            return
        # One task per connection: its posts stay in order, connections proceed in parallel,
        # and publish returns only when all are done (the next step's events come after).
        futures = [self._executor().submit(self._post_each, c, p) for c, p in posts]
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
