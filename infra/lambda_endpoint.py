"""A local stand-in for the Lambda Invoke API, so self-invoke dispatch runs on a laptop.

moto's Lambda runs functions in Docker, which the local stack does not need or assume.
This serves ``POST /2015-03-31/functions/{name}/invocations`` for the functions the local
stack registers, and runs them in-process: ``Event`` invocations are queued and retried
twice on error with the same request id, as Lambda's asynchronous invocation does;
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.lambda_context import LambdaContext

Handler = Callable[[Any, Any], Any]
_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
ASYNC_RETRIES = 2  # Lambda's default MaximumRetryAttempts for asynchronous invocation
log = logging.getLogger("hopgraph.local.lambda")


class LocalLambdaEndpoint:
    """Serves Invoke for registered handlers on ``host:port`` (0: a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, workers: int = 8) -> None:
        self.functions: dict[str, Handler] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._server = ThreadingHTTPServer((host, port), self._request_handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def register(self, name: str, handler: Handler) -> None:
        self.functions[name] = handler

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def invoke_async(self, name: str, payload: Any) -> None:
        request_id = str(uuid.uuid4())
        self._pool.submit(self._run_with_retries, name, payload, request_id)

    def _run_with_retries(self, name: str, payload: Any, request_id: str) -> None:
        for attempt in range(ASYNC_RETRIES + 1):
            try:
                self.functions[name](payload, LambdaContext(name, request_id))
                return
            except Exception:
                log.exception(
                    "async invocation %s of %s failed (attempt %d)", request_id, name, attempt + 1
                )
                time.sleep(0.05 * (attempt + 1))

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class InvokeHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                match = _PATH.match(self.path.split("?")[0])
                name = match.group(1) if match else ""
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
                if self.headers.get("X-Amz-Invocation-Type") == "Event":
                    endpoint.invoke_async(name, payload)
                    self._reply(202, None)
                    return
                result = endpoint.functions[name](payload, LambdaContext(name, str(uuid.uuid4())))
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
