"""Where the local stack listens: an open stack stays on this machine, moto and @connections
answer this machine only, whatever ``--host`` says."""

from __future__ import annotations

from typing import Any

import pytest

from infra.gateway.ws_gateway import _from_this_machine
from infra.stack.local_stack import LOOPBACK, StackConfig, StackError, check_host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_a_loopback_host_is_said_nothing(host: str) -> None:
    assert check_host(StackConfig(host=host)) is None
    assert check_host(StackConfig(host=host, auth="strict")) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10"])
def test_a_network_host_is_refused_open_and_warned_of_strict(host: str) -> None:
    # An open (dev) stack on a network: refused, saying what to add
    with pytest.raises(StackError, match="--auth strict"):
        check_host(StackConfig(host=host))
    # A strict one: served, with a warning that says what answers whom
    warning = check_host(StackConfig(host=host, auth="strict"))
    assert warning is not None and host in warning and LOOPBACK in warning


@pytest.mark.parametrize(
    ("client", "answered"),
    [(("127.0.0.1", 5000), True), (("::1", 5000), True), (("192.0.2.10", 5000), False)],
)
def test_the_management_api_answers_this_machine_only(client: Any, answered: bool) -> None:
    assert _from_this_machine({"type": "http", "client": client}) is answered


def test_the_banner_counts_in_words_and_names_a_non_default_api() -> None:
    from infra.stack.local_stack import _api_setting, _restored

    assert _restored({"items": 1, "messages": 1}).startswith("1 item and 1 message kept")
    assert _restored({"items": 2, "messages": 0}).startswith("2 items and 0 messages kept")
    assert _api_setting(StackConfig()) == ""
    assert _api_setting(StackConfig(port=9000)) == "HOPGRAPH_API=http://127.0.0.1:9000 "
