"""Runs the dashboard tests make through the API of their module's local stack (the ``stack``
and ``api`` fixtures of conftest.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx

LIVE = 30_000  # ms: the longest a page may take to show what a run did


def create(api: httpx.Client, graph: dict[str, Any]) -> str:
    reply = api.post("/graphs", params={"reuse": "true"}, json=graph)
    assert reply.status_code in (200, 201), reply.text
    return str(reply.json()["graph_id"])


def start(api: httpx.Client, graph_id: str, state: dict[str, Any]) -> str:
    reply = api.post("/runs", json={"graph_id": graph_id, "input": state})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["run_id"])


def wait_until_over(api: httpx.Client, run_id: str, bound_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + bound_s
    while (run := api.get(f"/runs/{run_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} still running after {bound_s} s"
        time.sleep(0.2)
    return run  # type: ignore[no-any-return]
