"""The moto process's WSGI application: DynamoDB's and SQS's JSON calls straight to moto's
response classes, everything else through moto's own server application.

moto's server application (``DomainDispatcherApplication``) finds the service of every
request by parsing its headers, then runs a Flask application per service: a request
context, URL routing, CORS and session hooks, and moto's ``convert_to_flask_response``
around the response class's ``dispatch``. Profiles of the local stack's moto process under
benchmarks/local_load.py put that per-request machinery at about a third of the process's
time, more than most DynamoDB and SQS calls cost themselves.

The stack's clients speak AWS's JSON protocol to both services: a POST to ``/`` whose
``X-Amz-Target`` names the operation, unsigned (infra/stack/local_clients.py: moto's application
would not find the service of such a request) or with a SigV4 credential scope that names
the service.
Those requests are handed here to the same ``dispatch`` the Flask view calls, with the
same request class moto's server uses (so moto sees a server request, as it did), and
answered with the same Flask ``Response`` that view builds. That is what moto's in-process
mock does too (it calls ``dispatch`` per service, with no Flask application around it).
Anything else (another service, the query protocol, moto's own ``/moto-api``) goes to
moto's application unchanged. Hand-written: moto has no server mode without Flask.
tests/functional/test_moto_local.py checks both paths answer the same status, headers and
body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_TARGETS = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs"}
"""X-Amz-Target prefix -> the SigV4 signing name moto's application routes it by. (An older
DynamoDB API version or DynamoDB Streams has another prefix, and takes moto's path.)"""


class DirectApplication:
    """WSGI: the JSON calls of :data:`_TARGETS` to moto's response classes, the rest to
    ``fallback`` (moto's ``DomainDispatcherApplication``)."""

    def __init__(self, fallback: WsgiApp) -> None:
        from moto.dynamodb.responses import DynamoHandler
        from moto.sqs.responses import SQSResponse

        self.fallback = fallback
        self._dispatchers: dict[str, Callable[..., Any]] = {
            "dynamodb": DynamoHandler.dispatch,
            "sqs": SQSResponse.dispatch,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        dispatch = self._dispatcher(environ)
        if dispatch is None:
            return self.fallback(environ, start_response)
        return _respond(dispatch, environ, start_response)

    def _dispatcher(self, environ: dict[str, Any]) -> Callable[..., Any] | None:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/":
            return None
        if "HTTP_ORIGIN" in environ:  # a browser's request: moto's CORS answers it
            return None
        service = _TARGETS.get(environ.get("HTTP_X_AMZ_TARGET", "").partition(".")[0])
        if service is None:
            return None
        # Unsigned (the stack's clients, infra/stack/local_clients.py): the target alone says the
        # service. Signed: the credential scope, as moto's application routes it.
        authorization = environ.get("HTTP_AUTHORIZATION")
        if authorization is not None and _signing_name(authorization) != service:
            return None
        return self._dispatchers[service]


def _signing_name(authorization: str) -> str | None:
    """The service of a SigV4 ``Authorization`` header's credential scope, as moto's
    application reads it (``Credential=AKID/20240101/us-east-1/dynamodb/aws4_request``)."""
    try:
        scope = authorization.split(",")[0].split()[1]
        _, _, _, service, _ = scope.split("/")
    except (IndexError, ValueError):
        return None
    return service.lower()


def _respond(
    dispatch: Callable[..., Any], environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    """What moto's ``convert_to_flask_response`` does in its Flask view, without Flask's
    application around it."""
    from botocore.exceptions import ClientError
    from flask import Response
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import BackendRequest
    from moto.settings import DISABLE_GLOBAL_CORS

    request = _request(BackendRequest, environ)
    try:
        recorder._record_request(request)
        result = dispatch(request, request.raw_url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    status, headers, content = result if len(result) == 3 else (200, {}, result)
    response = Response(response=content, status=status, headers=headers)
    if not DISABLE_GLOBAL_CORS:  # what moto's Flask application's CORS adds when no Origin
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response(environ, start_response)


_ROOT_KEYS = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME")
_roots: dict[tuple[Any, ...], str] = {}
"""werkzeug's ``root_url`` by what it is computed from. moto reads every request's URL
(``raw_url``, through ``root_url``), which werkzeug builds anew each time with IRI
encoding: a tenth of the process's time in profiles, for the same few values (the clients
call one endpoint)."""


def _request(request_class: Any, environ: dict[str, Any]) -> Any:
    request = request_class(environ)
    key = tuple(environ.get(name) for name in _ROOT_KEYS)
    root = _roots.get(key)
    if root is None:
        if len(_roots) >= 64:  # many hosts: keep the cache small rather than complete
            _roots.clear()
        _roots[key] = request.root_url  # werkzeug's own, computed once
    else:
        request.root_url = root
    return request
