"""The handlers' boto3 clients in the local stack, with connection pools sized to its pollers.

On Lambda each invocation has its own process and one connection per client is plenty. The
local stack runs every invocation as a thread of one process sharing one client per service,
and botocore's pool keeps 10 connections by default: with more pollers than that, every call
beyond the tenth opens a new connection, which costs more than the call itself. So the local
stack builds the shared clients with a pool as large as the threads that can call at once,
and installs them with :func:`functions.aws.clients.override`; otherwise they are configured
as functions/aws/clients.py configures them. The clients of the services moto serves send
over the moto process's Unix socket when the stack gives one (infra/moto/socket.py, which
keeps a connection per calling thread the same way).

Their DynamoDB and SQS requests go unsigned: SigV4 signing is a tenth of the handlers'
process's time under benchmarks/local_load.py, and moto checks no signature. moto reads two
things from a signed request's ``Authorization`` header: the region (without it, its default,
us-east-1) and the access key, which names an account only when moto's IAM has issued it
(the stack's ``local`` does not: the default account either way). So a client of us-east-1
is answered the same signed or not; a client of another region keeps signing. The moto
process routes the stack's JSON calls by ``X-Amz-Target`` (infra/moto/wsgi.py);
tests/functional/test_moto_local.py checks the answers are the same.
"""

from __future__ import annotations

from typing import Any

from functions.aws import clients

SERVICES = ("dynamodb", "sqs", "lambda")
"""The services the handlers call through the shared clients (the Management API client is
per endpoint, and the gateway answers it in process)."""

MOTO_SERVICES = frozenset({"dynamodb", "sqs"})
"""The services of the moto process (Lambda's Invoke goes to infra/stack/lambda_endpoint.py)."""
UNSIGNED_SERVICES = MOTO_SERVICES
"""Served by the moto process, which answers them unsigned as it does signed."""
MOTO_DEFAULT_REGION = "us-east-1"
"""The region moto assumes for a request without a SigV4 credential scope."""


def config(service: str, pool_size: int, region: str) -> Any:
    """The botocore settings of the stack's clients of ``service`` in ``region``."""
    from botocore import UNSIGNED
    from botocore.config import Config

    unsigned = service in UNSIGNED_SERVICES and region == MOTO_DEFAULT_REGION
    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        tcp_keepalive=True,
        max_pool_connections=pool_size,
        **({"signature_version": UNSIGNED} if unsigned else {}),
    )


def pooled(service: str, pool_size: int, region: str, moto_socket: str = "") -> Any:
    """A client of ``service`` that keeps up to ``pool_size`` connections open; with
    ``moto_socket``, a client of a service moto serves sends over that socket instead."""
    import boto3

    from infra.moto.socket import SocketTransport

    settings = config(service, pool_size, region)
    session = boto3.session.Session(region_name=region)
    # boto3-stubs type client() per service name literal; any service is asked for here
    client = session.client(service, config=settings)  # type: ignore[call-overload]
    if moto_socket and service in MOTO_SERVICES:
        SocketTransport(moto_socket).install(client)
    return client


def install_pooled(pool_size: int, region: str, moto_socket: str = "") -> None:
    """Build the shared clients of :data:`SERVICES` with ``pool_size`` connections each."""
    for service in SERVICES:
        clients.override(service, pooled(service, pool_size, region, moto_socket))
