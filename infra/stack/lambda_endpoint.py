"""A local stand-in for the Lambda Invoke API, so self-invoke dispatch runs on a laptop.

moto's Lambda runs functions in Docker, which the local stack does not need or assume.
This serves ``POST /2015-03-31/functions/{name}/invocations`` for the functions the local
stack registers, and runs them in-process, as the function's settings in template.yaml say
(:class:`infra.stack.invocations.FunctionSettings`):

- ``Event`` invocations are queued and retried ``MaximumRetryAttempts`` times (default 2) on
  error or timeout, with the same request id, as Lambda's asynchronous invocation does; when
  the retries are spent, the invocation record goes to the OnFailure destination (see
  :func:`failure_record`), or is dropped with an error log if there is none.
- The ``X-Amzn-Trace-Id`` header of the request carries the caller's ``Lineage``: an event
  whose chain has reached the recursive loop limit is not run (unless the function declares
  ``RecursiveLoop: Allow``) and goes straight to the OnFailure destination; a synchronous
  call is refused with ``RecursiveInvocationException``.
- An invocation that overruns its ``Timeout`` counts as failed with ``Sandbox.Timedout``.
- A payload over the asynchronous limit (256 KB) is refused with ``RequestTooLargeException``.

``RequestResponse`` returns the handler's result. boto3's own Lambda client reaches it
through ``AWS_ENDPOINT_URL_LAMBDA``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from infra.stack.invocations import (
    FunctionSettings,
    Invocation,
    InvocationTimedOut,
    invoke,
)
from infra.template import reader as template

Handler = Callable[[Any, Any], Any]
OnFailure = Callable[[dict[str, Any]], None]
"""Delivers an invocation record to a function's OnFailure destination."""
_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
ASYNC_PAYLOAD_LIMIT = 262_144
"""Lambda's limit on an asynchronous invocation's payload (256 KB; 1 MB in newer accounts)."""
log = logging.getLogger("hopgraph.local.lambda")


@dataclass(frozen=True, slots=True)
class Function:
    """A registered function: its handler, its settings, where its failed events go."""

    handler: Handler
    settings: FunctionSettings
    on_failure: OnFailure | None = None


def failure_record(
    function: FunctionSettings,
    request_id: str,
    payload: Any,
    error: dict[str, Any],
    *,
    attempts: int,
    condition: str = "RetriesExhausted",
) -> dict[str, Any]:
    """The invocation record Lambda sends an OnFailure destination (its documented shape).

    ``error`` is the response payload: ``{"errorType", "errorMessage"}``. An event stopped by
    recursive loop detection never ran (``attempts`` 0); its record carries the Invoke API's
    error type, ``RecursiveInvocationException``."""
    now = datetime.now(UTC)
    return {
        "version": "1.0",
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function.name}"
            ":$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": error,
    }


@dataclass(frozen=True, slots=True)
class SqsDestination:
    """An SQS OnFailure destination: the record is the message body, as Lambda sends it."""

    sqs: Any
    queue_url: str

    def __call__(self, record: dict[str, Any]) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(record))


def register_from_template(
    endpoint: LocalLambdaEndpoint,
    function_id: str,
    name: str,
    handler: Handler,
    *,
    sqs: Any,
    queue_urls: dict[str, str],
    template_doc: template.Template | None = None,
) -> None:
    """Serve the template's ``function_id`` as ``name``, with its settings and its SQS
    OnFailure destination (``queue_urls``: queue URLs by logical id)."""
    definition = template.function_definitions(template_doc)[function_id]
    queue = definition["on_failure"]
    on_failure = SqsDestination(sqs, queue_urls[queue]) if queue is not None else None
    endpoint.register(name, handler, FunctionSettings.from_template(name, definition), on_failure)
    alias = template.function_alias(template_doc)
    if alias is not None:  # invoked through its alias too (`name:live`), as on AWS
        qualified = f"{name}:{alias}"
        settings = FunctionSettings.from_template(qualified, definition)
        endpoint.register(qualified, handler, settings, on_failure)


class LocalLambdaEndpoint:
    """Serves Invoke for registered handlers on ``host:port`` (0: a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, workers: int = 8) -> None:
        self.functions: dict[str, Function] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._server = ThreadingHTTPServer((host, port), self._request_handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):  # typeshed allows it; an AF_INET server has a str
            host = host.decode()
        return f"http://{host}:{port}"

    def register(
        self,
        name: str,
        handler: Handler,
        settings: FunctionSettings | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        """Serve ``name``; without ``settings``, Lambda's defaults (30 s, Terminate)."""
        self.functions[name] = Function(handler, settings or FunctionSettings(name), on_failure)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def invoke_async(self, name: str, payload: Any, trace_header: str | None = None) -> None:
        request_id = str(uuid.uuid4())
        self._pool.submit(self._run_with_retries, name, payload, request_id, trace_header)

    def _run_with_retries(
        self, name: str, payload: Any, request_id: str, trace_header: str | None
    ) -> None:
        function = self.functions[name]
        settings = function.settings
        chain = settings.chain_length(trace_header)
        if settings.stops(chain):
            log.error("recursive loop detected: event %s of %s is not run", request_id, name)
            self._give_up(function, request_id, payload, _recursion_error(name), attempts=0)
            return
        attempts = settings.max_retry_attempts + 1
        error: dict[str, Any] = {}
        for attempt in range(1, attempts + 1):
            failure = _run_once(function, Invocation(settings, chain + 1, request_id), payload)
            if failure is None:
                return
            error = failure
            log.error(
                "async invocation %s of %s failed (attempt %d of %d): %s: %s",
                request_id, name, attempt, attempts, error["errorType"], error["errorMessage"],
            )  # fmt: skip
            if attempt < attempts:
                time.sleep(0.05 * attempt)
        self._give_up(function, request_id, payload, error, attempts=attempts)

    def _give_up(
        self,
        function: Function,
        request_id: str,
        payload: Any,
        error: dict[str, Any],
        *,
        attempts: int,
    ) -> None:
        if function.on_failure is None:
            log.error(
                "event %s dropped: %s has no OnFailure destination",
                request_id,
                function.settings.name,
            )
            return
        record = failure_record(function.settings, request_id, payload, error, attempts=attempts)
        try:
            function.on_failure(record)
        except Exception:  # Lambda counts it in DestinationDeliveryFailures and drops it
            log.exception("could not deliver event %s to its OnFailure destination", request_id)

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class InvokeHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                match = _PATH.match(self.path.split("?")[0])
                name = unquote(match.group(1)) if match else ""  # a qualifier's ":" is %3A
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                if name not in endpoint.functions:
                    self._reply(
                        404,
                        {"Type": "User", "message": f"Function not found: {name}"},
                        error="ResourceNotFoundException",
                    )
                    return
                payload = json.loads(raw or b"{}")
                trace = self.headers.get("X-Amzn-Trace-Id")
                if self.headers.get("X-Amz-Invocation-Type") == "Event":
                    if len(raw) > ASYNC_PAYLOAD_LIMIT:
                        message = f"Request must be smaller than {ASYNC_PAYLOAD_LIMIT} bytes"
                        self._reply(413, {"Type": "User", "message": message},
                                    error="RequestTooLargeException")  # fmt: skip
                        return
                    endpoint.invoke_async(name, payload, trace)
                    self._reply(202, None)
                    return
                self._invoke_sync(endpoint.functions[name], name, payload, trace)

            def _invoke_sync(
                self, function: Function, name: str, payload: Any, trace: str | None
            ) -> None:
                settings = function.settings
                chain = settings.chain_length(trace)
                if settings.stops(chain):
                    error = _recursion_error(name)
                    self._reply(400, {"Type": "User", "message": error["errorMessage"]},
                                error="RecursiveInvocationException")  # fmt: skip
                    return
                result = invoke(Invocation(settings, chain + 1), function.handler, payload)
                self._reply(200, result)

            def _reply(self, status: int, body: Any, error: str | None = None) -> None:
                data = b"" if body is None else json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # uvicorn already logs the API; one line per hop would drown it

        return InvokeHandler


def _run_once(function: Function, invocation: Invocation, payload: Any) -> dict[str, Any] | None:
    """One attempt of an asynchronous invocation: None if it succeeded, else its error as
    the Python runtime reports it (``errorType``, ``errorMessage``)."""
    try:
        invoke(invocation, function.handler, payload)
    except InvocationTimedOut as exc:
        return {"errorType": "Sandbox.Timedout", "errorMessage": str(exc)}
    except Exception as exc:
        return {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    return None


def _recursion_error(name: str) -> dict[str, Any]:
    return {
        "errorType": "RecursiveInvocationException",
        "errorMessage": f"Lambda has detected {name} being invoked in a recursive loop with "
        "other AWS resources and stopped its invocation",
    }
