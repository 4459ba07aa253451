"""Tokens never reach a log line: the local stack's --verbose logs every WebSocket handshake
(uvicorn writes its path with the query string, and a browser's carries ``?token=<JWT>``)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from infra.stack.console import RedactTokens, redact_tokens, redact_tokens_in_logs

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


@pytest.mark.parametrize(
    "text",
    [
        f"/?run_id=r1&token={JWT}",
        f"/?token={JWT}&run_id=r1",
        f"Authorization: Bearer {JWT}",
        f"authorization: bearer {JWT}",
        f"claims from {JWT}.",
        "/?access_token=opaque-secret-value",
    ],
)
def test_every_token_shape_is_redacted(text: str) -> None:
    redacted = redact_tokens(text)
    assert JWT not in redacted and "opaque-secret-value" not in redacted
    assert "<redacted>" in redacted
    assert redact_tokens("/?run_id=r1") == "/?run_id=r1"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_a_websocket_handshake_line_is_logged_without_its_token(captured: io.StringIO) -> None:
    # Given the local stack's logging, verbose, with redaction installed
    redact_tokens_in_logs()
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.setLevel(logging.INFO)
    # When uvicorn logs a handshake as it does (websockets_sansio_impl.py), and a handler's
    # child logger logs an event holding a token
    uvicorn.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/?run_id=r1&token={JWT}")
    logging.getLogger("hopgraph.local.ws").warning("connect event %s", {"token": JWT})
    # Then the lines are there, the token is not
    text = captured.getvalue()
    assert '"WebSocket /?run_id=r1&token=<redacted>" [accepted]' in text
    assert "connect event" in text
    assert JWT not in text
    # And installing twice adds no second filter
    redact_tokens_in_logs()
    assert sum(isinstance(f, RedactTokens) for f in uvicorn.filters) == 1
