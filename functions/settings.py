"""Environment settings, validated once at cold start.

Every variable a handler reads is declared here and in template.yaml (a test checks the two
agree). Nothing else in the code base reads the process environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.blobs import MAX_STATE_BYTES

ITEM_STATE_LIMIT = 350_000
"""The largest state without a bucket: what fits, compressed, in one DynamoDB item."""

ENV_PREFIX = "HOPGRAPH_"


class Settings(BaseModel):
    """Deployment configuration; field ``x`` is read from ``HOPGRAPH_X``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    table: str = Field(description="DynamoDB table holding graphs, runs, steps, connections")
    step_queue_url: str = Field(default="", description="SQS queue of step hops")
    dispatch: Literal["sqs", "lambda"] = Field(default="sqs", description="how hops travel")
    worker_function: str = Field(default="", description="worker Lambda name, for self-invoke")
    websocket_function: str = Field(
        default="", description="the WebSocket Lambda's name: $connect's replay runs there"
    )
    ws_endpoint: str = Field(default="", description="API Gateway Management API endpoint")
    ws_url: str = Field(default="", description="the WebSocket API's URL, as clients connect")
    toolkits: str = Field(
        default="engine.toolkits.code_review,engine.toolkits.basics,engine.toolkits.research,"
        "functions.models.toolkit",
        description="comma-separated toolkit modules",
    )
    bucket: str = Field(
        default="",
        description="S3 bucket of state values too large for an item (engine/blobs.py); empty: "
        "none, and a state must fit in one item (then at most 350 KB)",
    )
    state_limit_bytes: int = Field(
        default=350_000,
        gt=0,
        le=MAX_STATE_BYTES,
        description="the largest state a run may have (its JSON); above 350 KB only with a bucket",
    )
    retention_days: int = Field(
        default=0,
        ge=0,
        description="days a run's log items (steps, tasks, attempts) are kept after they were "
        "written: DynamoDB's TTL deletes them then, as the bucket's lifecycle rule deletes its "
        "values (0: kept until deleted)",
    )
    max_steps: int = Field(default=100, gt=0, le=10_000)
    step_max_receives: int = Field(default=5, gt=0, description="the step queue's maxReceiveCount")
    lease_seconds: float = Field(
        default=60, ge=0, description="how long a live hop may take: twice the worker's Timeout"
    )
    map_window: int = Field(default=100, gt=0, le=10_000, description="a map's items in flight")
    run_requests_dlq_url: str = Field(default="", description="DLQ for malformed run requests")
    run_requests_queue_url: str = Field(
        default="", description="the run-requests queue (where a redrive sends parked requests)"
    )
    connection_ttl_seconds: int = Field(default=7_200, gt=0)
    auth_issuer: str = Field(default="", description="issuer URL of the accepted JWTs")
    auth_audience: str = Field(default="", description="comma-separated accepted audiences")
    admin_claim: str = Field(
        default="cognito:groups", description="claim whose value makes a caller an admin"
    )
    admin_value: str = Field(default="hopgraph-admin", description="that value (group, scope)")
    quota_runs_in_flight: int = Field(
        default=0, ge=0, description="runs one owner may have running at once (0: no limit)"
    )
    quota_requests_per_second: int = Field(
        default=0, ge=0, description="POST requests one owner may make per second (0: no limit)"
    )
    quota_map_width: int = Field(
        default=0, ge=0, description="tasks one superstep of a run may have (0: no limit)"
    )
    # Read by functions/models/ from the same variables (the CLI runs it without the rest).
    openai_base_url: str = Field(
        default="", description="the OpenAI-compatible endpoint of model nodes' openai provider"
    )
    openai_api_key_parameter: str = Field(
        default="",
        pattern=r"^((/[A-Za-z0-9_.-]+)+)?$",
        description="the SSM parameter (a SecureString, /a/path) holding that endpoint's key",
    )

    @property
    def effective_state_limit(self) -> int:
        """The state limit as this deployment can keep it: without a bucket, one item's."""
        return (
            self.state_limit_bytes if self.bucket else min(self.state_limit_bytes, ITEM_STATE_LIMIT)
        )

    @property
    def toolkit_modules(self) -> list[str]:
        return [m.strip() for m in self.toolkits.split(",") if m.strip()]

    @property
    def auth_audiences(self) -> list[str]:
        return [a.strip() for a in self.auth_audience.split(",") if a.strip()]


class SettingsError(RuntimeError):
    """The environment does not describe a usable deployment."""


def env_var(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def read_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw = {name: env[env_var(name)] for name in Settings.model_fields if env_var(name) in env}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"invalid hopgraph environment: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use (cold start) and then cached."""
    return read_settings()
