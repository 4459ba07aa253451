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


def pytest_configure(config: pytest.Config) -> None:
    share_botocore_loaders()


def share_botocore_loaders() -> None:
    """Every botocore session of the test process reads the service models (JSON files of
    megabytes) through one loader per data path, which caches them, instead of a loader of
    its own: moto's ``mock_aws`` drops boto3's default session each time it starts, and the
    handlers build a session per client, so each moto stack of a test read every model again
    (about three quarters of a functional test's CPU). The loader only reads and caches
    botocore's read-only data, as it does for all clients of one session."""
    import botocore.loaders
    import botocore.session

    if getattr(botocore.session.create_loader, "shared", False):
        return
    loaders: dict[object, botocore.loaders.Loader] = {}
    create = botocore.loaders.create_loader

    def shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in loaders:
            loaders[search_path_string] = create(search_path_string)
        return loaders[search_path_string]

    shared_loader.shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = shared_loader


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])
    items.sort(key=lambda item: Path(str(item.path)).resolve().relative_to(TESTS).parts[:1]
               == (LAST,))  # fmt: skip
    xdist_groups(items)


def xdist_groups(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (pytest-xdist, ``--dist loadgroup``: ``make test``), each test goes
    to whichever worker is free, but a module that starts local stacks for all of its tests
    (``e2e``) runs whole on one worker, so that each stack is started once; the ``browser``
    tier runs on one worker too (one Chromium), and after all else there, as above."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        if parts[:1] == (LAST,):
            item.add_marker(pytest.mark.xdist_group(LAST))
        elif parts[:1] == ("e2e",):
            item.add_marker(pytest.mark.xdist_group("/".join(parts)))
