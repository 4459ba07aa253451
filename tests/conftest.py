"""Each test is marked with its tier, the folder it lives in, so that ``-m`` picks tiers:
``make check`` runs ``unit`` and ``contract`` (the inner loop, about a minute), ``make test``
runs them all. ``slow`` (declared where a test restarts stacks or runs the fault plan) and
``e2e`` (the local stack on free ports) are declared in the test modules themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "contract", "functional", "api", "faults", "e2e")


LAST = "browser"
"""Run after every other tier: Playwright's sync API keeps an event loop running in the main
thread until the session ends, and the in-process API harness (Mangum) then finds "this event
loop is already running"."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])
    items.sort(key=lambda item: Path(str(item.path)).resolve().relative_to(TESTS).parts[:1]
               == (LAST,))  # fmt: skip
