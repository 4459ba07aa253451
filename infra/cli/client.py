"""A small client of the hopgraph HTTP and WebSocket APIs, used by the command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from infra.cli.step_order import StepOrder


class ApiError(Exception):
    """The API answered with an error; ``str()`` is the message a person should read."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(_error_text(status, body))


class ApiUnreachable(ApiError):
    """Nothing answers at the API's address: the stack is down, or the address is wrong."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        self.status, self.body = 0, None
        Exception.__init__(self, f"nothing answers at {url} ({reason})")  # no HTTP status


class ApiTimedOut(ApiError):
    """The API took the request and did not answer in time: the stack is up, but busy. What
    was asked (a run started, a graph created) may still happen, so the message says to
    look before asking again."""

    def __init__(self, url: str, timeout: float, method: str) -> None:
        self.url = url
        self.status, self.body = 0, None
        text = f"the API at {url} took the request but did not answer within {timeout:g} s"
        if method == "GET":
            text += ": the stack is up, but busy. Try again in a moment."
        else:
            text += (
                ": the stack is up, but busy, and what was asked may still happen. Look "
                "before asking again ('hopgraph runs list', 'hopgraph graphs list')."
            )
        Exception.__init__(self, text)


def unreachable_reason(exc: BaseException) -> str:
    """A transport failure in a few words ("connection refused"), not an errno dump."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "unknown host"
    return text


def _error_text(status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {status}: {body}"
    lines = [f"{error.get('message', 'error')} (HTTP {status})"]
    for problem in error.get("problems") or []:
        lines.append(f"  {problem.get('location')}: {problem.get('message')}")
    return "\n".join(lines)


class HopgraphClient:
    """``token``: the bearer token sent with every request, or a function that finds it,
    called once, at the first request (None: no token)."""

    def __init__(
        self,
        api: str,
        timeout: float = 30.0,
        token: str | Callable[[], str | None] | None = None,
    ) -> None:
        self.api = api.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.api, timeout=timeout)
        self._token = token

    @property
    def token(self) -> str | None:
        if callable(self._token):
            self._token = self._token()
        return self._token

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._exchange(method, path, **kwargs)[1]

    def _exchange(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """The status and decoded body of a successful reply; ApiError otherwise."""
        token = self.token
        if token is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {token}"}
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:  # connected: the stack is up
            raise ApiTimedOut(self.api, self.timeout, method) from exc
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.api, unreachable_reason(exc)) from None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        return response.status_code, body

    # graphs
    def create_graph(self, definition: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/graphs", json=definition)
        return result

    def find_or_create_graph(self, definition: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The stored graph with this content, created (True) unless one exists."""
        status, body = self._exchange("POST", "/graphs", params={"reuse": "true"}, json=definition)
        return body, status == 201

    def list_graphs(self) -> list[dict[str, Any]]:
        return list(self._pages("/graphs", {}))

    def get_graph(self, graph_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/graphs/{graph_id}")
        return result

    def websocket_url(self) -> str | None:
        """Where this API says its WebSocket API is (``/health``); None if it does not say."""
        try:
            response = self._http.get("/health")
            url = response.json().get("websocket") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return url if isinstance(url, str) and url else None

    def mermaid(self, graph_id: str) -> str:
        return str(self._call("GET", f"/graphs/{graph_id}/mermaid"))

    # runs
    def start_run(
        self,
        graph_id: str,
        state: dict[str, Any],
        max_steps: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"graph_id": graph_id, "input": state}
        if max_steps is not None:
            body["max_steps"] = max_steps
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        result: dict[str, Any] = self._call("POST", "/runs", json=body)
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/runs/{run_id}")
        return result

    def list_runs(self, graph_id: str | None, status: str | None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("graph_id", graph_id), ("status", status)) if v}
        return list(self._pages("/runs", params))

    def steps(self, run_id: str, after: int = -1) -> list[dict[str, Any]]:
        """The whole execution log (the steps route pages by ``after``/``next_after``)."""
        steps: list[dict[str, Any]] = []
        while True:
            body = self._call("GET", f"/runs/{run_id}/steps", params={"after": after})
            steps.extend(body.get("items", []))
            after = body.get("next_after")
            if after is None:
                return steps

    def cancel(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/cancel")
        return result

    def resume(self, run_id: str, value: Any = None, task: str | None = None) -> dict[str, Any]:
        """Answer a paused run's question (``task``: which, when several wait)."""
        body: dict[str, Any] = {"value": value}
        if task is not None:
            body["task"] = task
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/resume", json=body)
        return result

    def history(self, run_id: str, *, states: bool) -> tuple[list[dict[str, Any]], Any]:
        """A run's whole history (paged by ``after``/``next_after``) and its parent."""
        items: list[dict[str, Any]] = []
        after, parent = -1, None
        while after is not None:
            params = {"after": after, "states": "true" if states else "false"}
            body = self._call("GET", f"/runs/{run_id}/history", params=params)
            items.extend(body.get("items", []))
            parent, after = body.get("parent"), body.get("next_after")
        return items, parent

    def fork(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/fork", json=body)
        return result

    def redrive(self, run_id: str, max_steps: int | None) -> dict[str, Any]:
        body = {} if max_steps is None else {"max_steps": max_steps}
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/redrive", json=body)
        return result

    def edit_state(
        self, run_id: str, update: dict[str, Any], as_node: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"update": update}
        if as_node is not None:
            body["as_node"] = as_node
        result: dict[str, Any] = self._call("POST", f"/runs/{run_id}/state", json=body)
        return result

    def tools(self) -> list[dict[str, Any]]:
        body = self._call("GET", "/tools")
        return list(body["tools"] if isinstance(body, dict) else body)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = dict(params, cursor=cursor) if cursor else params
            body = self._call("GET", path, params=query)
            yield from body.get("items", [])
            cursor = body.get("next_cursor")
            if not cursor:
                return


def with_token(ws_url: str, token: str | None) -> str:
    """The WebSocket URL carrying ``token`` as ``?token=``: browsers cannot set headers on a
    WebSocket handshake, so the API's ``$connect`` authorizer reads it there."""
    if token is None:
        return ws_url
    return f"{ws_url}{'&' if '?' in ws_url else '?'}token={quote(token, safe='')}"


def follow_events(
    ws_url: str, run_id: str, timeout: float, after: int = -1, token: str | None = None
) -> Iterator[dict[str, Any]]:
    """Yield a run's events from the WebSocket API, each step once and in step order, until
    its final run event.

    Subscribes after connecting (API Gateway cannot post during ``$connect``); the
    subscription replays the steps committed after ``after``, then the run's status, then
    the new steps as they commit, so a run that already ended is reported at once and
    nothing committed meanwhile is missed (infra/cli/step_order.py puts replay and live events
    together). A run status that counts steps that never came (a replay post that failed)
    is answered, after a short grace, by subscribing again from the gap."""
    from websockets.sync.client import connect

    with connect(with_token(ws_url, token), open_timeout=10) as socket:
        order = StepOrder(after)
        _subscribe(socket, run_id, after)
        resubscribed = 0
        while not order.done:
            try:
                event = json.loads(socket.recv(timeout=_GAP_GRACE_S if order.gap else timeout))
            except TimeoutError:
                if not order.gap or resubscribed >= _RESUBSCRIBES:
                    raise
                resubscribed += 1
                _subscribe(socket, run_id, order.next_seq - 1)
                continue
            if event.get("type") == "error":
                raise ApiError(404, {"error": {"message": event.get("message", "error")}})
            yield from order.add(event)


_GAP_GRACE_S = 2.0
"""How long to wait, while a gap is open, for the next event before subscribing again: a
step overtaken by another poster's is normally milliseconds behind."""
_RESUBSCRIBES = 3


def _subscribe(socket: Any, run_id: str, after: int) -> None:
    socket.send(json.dumps({"action": "subscribe", "run_id": run_id, "after": after}))
