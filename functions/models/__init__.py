"""Model providers behind :class:`engine.messages.ChatModel`: Bedrock Converse, any
OpenAI-compatible endpoint, and a scripted list; and the toolkit of model nodes.

Which provider a node uses is its ``provider``, unless configuration switches every node:
``HOPGRAPH_LLM`` is ``scripted``, ``bedrock`` or ``openai=<base URL>`` (the CLI's ``--llm``),
and ``HOPGRAPH_LLM_MODEL`` names the model then. Credentials come from the environment only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.messages import ChatModel, ModelError, ModelRequest, ModelResponse, TokenSink

LLM_ENV = "HOPGRAPH_LLM"
MODEL_ENV = "HOPGRAPH_LLM_MODEL"
KEY_ENV = "HOPGRAPH_OPENAI_API_KEY"
KEY_PARAMETER_ENV = "HOPGRAPH_OPENAI_API_KEY_PARAMETER"
BASE_URL_ENV = "HOPGRAPH_OPENAI_BASE_URL"


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """``provider``: overrides every node's (``None``: each node's own); ``base_url``: the
    OpenAI-compatible endpoint; ``model``: overrides every node's model."""

    provider: str | None = None
    base_url: str | None = None
    model: str | None = None

    @classmethod
    def parse(cls, value: str | None, model: str | None = None) -> LlmConfig:
        """``scripted``, ``bedrock`` or ``openai=URL`` (as ``--llm`` takes it)."""
        text = (value or "").strip()
        if not text:
            return cls(None, os.environ.get(BASE_URL_ENV), model)
        name, _, url = text.partition("=")
        if name not in ("scripted", "bedrock", "openai"):
            raise ValueError(f"--llm takes scripted, bedrock or openai=URL, not {text!r}")
        if name == "openai" and not (url or os.environ.get(BASE_URL_ENV)):
            raise ValueError("--llm openai needs the endpoint: openai=http://host:port/v1")
        return cls(name, url or os.environ.get(BASE_URL_ENV), model)

    @classmethod
    def from_env(cls) -> LlmConfig:
        return cls.parse(os.environ.get(LLM_ENV), os.environ.get(MODEL_ENV) or None)


class _Overridden:
    """A provider given another model id than the node names."""

    def __init__(self, inner: ChatModel, model: str) -> None:
        self.inner, self.model = inner, model

    def converse(self, request: ModelRequest, on_text: TokenSink | None = None) -> ModelResponse:
        from dataclasses import replace

        return self.inner.converse(replace(request, model=self.model), on_text)


class Providers:
    """Resolves a node's ``llm`` settings to a provider, each client made once."""

    def __init__(self, config: LlmConfig | None = None, clients: Any = None) -> None:
        self.config = config or LlmConfig()
        self._clients = clients
        self._made: dict[str, ChatModel] = {}
        self._lock = threading.Lock()

    def __call__(self, spec: Mapping[str, Any]) -> ChatModel:
        name = self.config.provider or str(spec.get("provider", "scripted"))
        with self._lock:
            model = self._made.get(name)
            if model is None:
                model = self._made[name] = self._make(name)
        return _Overridden(model, self.config.model) if self.config.model else model

    def _make(self, name: str) -> ChatModel:
        if name == "scripted":
            from functions.models.scripted import ScriptedModel

            return ScriptedModel()
        if name == "bedrock":
            from functions.models.bedrock import BedrockModel

            client = self._clients("bedrock-runtime") if self._clients else _boto("bedrock-runtime")
            return BedrockModel(client)
        if name == "openai":
            from functions.models.openai import OpenAIModel

            url = self.config.base_url
            if not url:
                raise ModelError(
                    "openai",
                    f"no endpoint: set {BASE_URL_ENV} or --llm openai=URL",
                    retryable=False,
                )
            return OpenAIModel(url, api_key())
        raise ModelError(name, "unknown provider", retryable=False)


def _boto(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # model calls take tens of seconds (the worker's timeout bounds them); boto3 retries
    # throttling itself a few times before the task's own retry policy is asked
    config = Config(read_timeout=300, retries={"mode": "standard", "max_attempts": 3})
    session: Any = boto3.session.Session()  # the stubs type only literal service names
    return session.client(service, config=config)


def api_key() -> str | None:
    """The OpenAI-compatible endpoint's key: an environment variable, or an SSM parameter
    (a SecureString) named by one; none for a local endpoint that needs none."""
    key = os.environ.get(KEY_ENV)
    if key:
        return key
    parameter = os.environ.get(KEY_PARAMETER_ENV)
    if not parameter:
        return None
    from functions.aws import clients

    try:
        reply = clients.client("ssm").get_parameter(Name=parameter, WithDecryption=True)
    except Exception as exc:  # botocore's errors: said once, with the parameter's name
        raise ModelError(
            "openai",
            f"cannot read the API key from SSM parameter {parameter!r}: {exc}",
            retryable=_throttled(exc),
            code="ApiKeyParameter",
        ) from exc
    return str(reply["Parameter"]["Value"])


def _throttled(exc: BaseException) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ThrottlingException", "TooManyUpdates", "InternalServerError")


def make_toolkit(registry: Any) -> Any:
    """The model nodes' tools for ``registry`` (:func:`engine.tools.load_toolkits` calls
    this for a toolkit module that has it), with providers from the environment."""
    from engine.agents import model_toolkit

    return model_toolkit(registry, Providers(LlmConfig.from_env()))
