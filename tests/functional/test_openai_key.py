"""The OpenAI-compatible provider's key on AWS: read once from the SSM parameter the template
names (a SecureString, on moto), as the worker's role may; locally from an environment
variable, which wins; and a parameter that cannot be read fails the model call saying which."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from engine.messages import ModelError
from functions.aws import clients
from functions.models import BASE_URL_ENV, KEY_ENV, KEY_PARAMETER_ENV, LlmConfig, Providers
from functions.models.openai import OpenAIModel
from functions.settings import read_settings

PARAMETER = "/hopgraph/openai-key"


@pytest.fixture()
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv(KEY_ENV, raising=False)
    clients.reset()
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        yield client
    clients.reset()


def test_the_key_is_read_from_the_named_secure_string_parameter(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the worker's environment as the template sets it, and the key in SSM
    ssm.put_parameter(Name=PARAMETER, Value="sk-from-ssm", Type="SecureString")
    monkeypatch.setenv(BASE_URL_ENV, "https://api.example.com/v1")
    monkeypatch.setenv(KEY_PARAMETER_ENV, PARAMETER)
    # When a model node's openai provider is made
    model = Providers(LlmConfig.from_env())({"provider": "openai", "model": "gpt"})
    # Then it calls the endpoint with the parameter's decrypted value
    assert isinstance(model, OpenAIModel)
    assert model.client.headers["Authorization"] == "Bearer sk-from-ssm"
    # And the settings accept the variables the template gives every function
    settings = read_settings({"HOPGRAPH_TABLE": "t", KEY_PARAMETER_ENV: PARAMETER,
                              BASE_URL_ENV: "https://api.example.com/v1"})  # fmt: skip
    assert settings.openai_api_key_parameter == PARAMETER


def test_an_environment_key_wins_and_needs_no_ssm(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-local")
    monkeypatch.setenv(KEY_PARAMETER_ENV, "/not/there")
    model = Providers(LlmConfig.parse("openai=http://127.0.0.1:9/v1"))({"provider": "openai"})
    assert isinstance(model, OpenAIModel)
    assert model.client.headers["Authorization"] == "Bearer sk-local"


def test_a_parameter_that_cannot_be_read_fails_the_call_naming_it(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_PARAMETER_ENV, "/hopgraph/missing")
    with pytest.raises(ModelError, match="/hopgraph/missing") as failed:
        Providers(LlmConfig.parse("openai=http://127.0.0.1:9/v1"))({"provider": "openai"})
    assert not failed.value.retryable and failed.value.code == "ApiKeyParameter"
