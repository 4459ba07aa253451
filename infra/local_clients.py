"""The handlers' boto3 clients in the local stack, with connection pools sized to its pollers.

On Lambda each invocation has its own process and one connection per client is plenty. The
local stack runs every invocation as a thread of one process sharing one client per service,
and botocore's pool keeps 10 connections by default: with more pollers than that, every call
beyond the tenth opens a new TCP connection to moto (and moto's server starts a thread for
it), which costs both processes more than the call itself. So the local stack builds the
shared clients with a pool as large as the threads that can call at once, and installs them
with :func:`functions.aws.clients.override`; otherwise they are configured as
functions/aws/clients.py configures them.
"""

from __future__ import annotations

from typing import Any

from functions.aws import clients

SERVICES = ("dynamodb", "sqs", "lambda")
"""The services the handlers call through the shared clients (the Management API client is
per endpoint, and the gateway answers it in process)."""


def pooled(service: str, pool_size: int, region: str) -> Any:
    """A client of ``service`` that keeps up to ``pool_size`` connections open."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        tcp_keepalive=True,
        max_pool_connections=pool_size,
    )
    return boto3.session.Session(region_name=region).client(service, config=config)


def install_pooled(pool_size: int, region: str) -> None:
    """Build the shared clients of :data:`SERVICES` with ``pool_size`` connections each."""
    for service in SERVICES:
        clients.override(service, pooled(service, pool_size, region))
