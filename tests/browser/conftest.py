"""Debian's Chromium driven by Playwright, and where screenshots go.

``make test`` installs Chromium (``make chromium``) and the dashboard's files (``make
dashboard``) first; without them these tests fail with the command that fixes it, rather than
skip. Playwright's own browser download is never used: ``executable_path`` names Debian's.
Screenshots of every page are written to ``test-artifacts/dashboard/`` (gitignored);
``UPDATE_DOCS_SCREENSHOT=1`` also writes the README's, ``docs/dashboard-run.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from functions.dashboard.routes import VENDOR
from tests.e2e.stack import REPO, StackProcess, launch

ARTIFACTS = REPO / "test-artifacts" / "dashboard"
DOCS_SCREENSHOT = REPO / "docs" / "dashboard-run.png"
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_path() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail("Debian's chromium is not installed: run `make chromium`")
    if not (VENDOR / "mermaid.min.js").exists():
        pytest.fail("the dashboard's files are not installed: run `make dashboard`")
    return found


# A local stack per test module, and a client of its API (dev mode: the dev user).
@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    started = launch("sqs")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(stack: StackProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        # A route handler still fetching when the page closes (a test that fakes a route,
        # while the page polls) would raise into the next test's setup: Playwright's way out
        # is to drop the handlers first, ignoring their errors.
        opened.unroute_all(behavior="ignoreErrors")
        context.close()
    assert not errors, f"the page raised: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot in test-artifacts/dashboard/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
