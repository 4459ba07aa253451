"""Run events to WebSocket subscribers, through the API Gateway Management API.

Posting is best effort (the Notifier contract): a failed post is logged and swallowed, and a
connection API Gateway reports gone (410) is forgotten. Within one ``publish`` the events
reach each subscriber in order, because one connection's posts are sequential; since the
service publishes a step's events before it dispatches the next hop, a subscriber also sees
one run's steps in order.

``prefetch`` starts the subscriber lookup on a background thread when a hop starts, so the
read overlaps the tool run instead of adding to the step's critical path. A final run event
is the exception: its subscribers are looked up afresh, so a client that subscribed while
the last step ran still learns how the run ended.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from engine.ports import FINAL_STATUSES, Connection, RunStore
from functions.aws import clients

log = logging.getLogger("hopgraph.notifier")

MANAGEMENT_API = "apigatewaymanagementapi"
FRAME_LIMIT = 120 * 1024
"""Largest event posted as is. API Gateway refuses a message over 128 KB (413); the margin
keeps an event that is cut down, and its envelope, clear of that limit."""
ERROR_TEXT_LIMIT = 2_000
LOOKUP_TIMEOUT_S = 10.0
_MAX_PENDING_LOOKUPS = 64


def encode(value: Any) -> bytes:
    """An event as the bytes of one WebSocket text message (compact JSON, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


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


def fit(event: dict[str, Any], limit: int = FRAME_LIMIT) -> dict[str, Any]:
    """``event`` itself if it serializes within ``limit`` bytes, else a copy cut down to fit.

    A step event's ``updates`` (a run event's ``state``) is replaced by its size and where to
    fetch it over the HTTP API; the top-level ``truncated`` field lists what was cut."""
    if len(encode(event)) <= limit:
        return event
    cut = dict(event)
    truncated: list[str] = []
    big = "updates" if event.get("type") == "step" else "state"
    if big in cut:
        cut[big] = {"truncated": True, "size": len(encode(cut[big])), "fetch": _fetch_path(event)}
        truncated.append(big)
    for text in ("error", "reason"):  # tool errors are free text, and may be long too
        value = cut.get(text)
        if isinstance(value, str) and len(value) > ERROR_TEXT_LIMIT and len(encode(cut)) > limit:
            cut[text] = value[:ERROR_TEXT_LIMIT] + "... (truncated)"
            truncated.append(text)
    cut["truncated"] = truncated
    return cut


def _fetch_path(event: dict[str, Any]) -> str:
    """Where the HTTP API serves what a cut-down event left out."""
    run_id, seq = event.get("run_id"), event.get("seq")
    if event.get("type") == "step" and isinstance(seq, int):
        return f"/runs/{run_id}/steps?after={seq - 1}&limit=1"
    return f"/runs/{run_id}"


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
        self._lookups: OrderedDict[str, Future[list[Connection]]] = OrderedDict()
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="notify")
        return self._pool

    # -- Notifier ------------------------------------------------------------------------------
    def prefetch(self, run_id: str) -> None:
        """Start looking up ``run_id``'s subscribers; ``publish`` picks the answer up."""
        try:
            future = self._executor().submit(self.store.subscribers, run_id)
        except Exception:  # a pool shut down at interpreter exit: publish looks up itself
            log.warning("subscriber prefetch not started", exc_info=True)
            return
        with self._lock:
            self._lookups[run_id] = future
            self._lookups.move_to_end(run_id)
            while len(self._lookups) > _MAX_PENDING_LOOKUPS:  # hops that ended unpublished
                self._lookups.popitem(last=False)

    def publish(self, run_id: str, events: list[dict[str, Any]]) -> None:
        """Post ``events`` to every subscriber of ``run_id``; never raises."""
        try:
            connections = self._subscribers(run_id, fresh=_ends_run(events))
            if connections:
                self._post_all(connections, [encode(fit(event)) for event in events])
        except Exception:
            log.exception("publishing events of run %s failed", run_id)

    # -- internals -----------------------------------------------------------------------------
    def _subscribers(self, run_id: str, *, fresh: bool) -> list[Connection]:
        with self._lock:
            pending = self._lookups.pop(run_id, None)
        if pending is not None and not fresh:
            try:
                return pending.result(timeout=LOOKUP_TIMEOUT_S)
            except Exception:
                log.warning("prefetched subscriber lookup of run %s failed", run_id, exc_info=True)
        return self.store.subscribers(run_id)

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


def _ends_run(events: list[dict[str, Any]]) -> bool:
    return any(e.get("type") == "run" and e.get("status") in FINAL_STATUSES for e in events)
