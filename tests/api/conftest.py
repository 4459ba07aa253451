"""The schemathesis tier: counts the generated cases and reports them after the run."""

from __future__ import annotations

from collections import Counter

import pytest

CASES = pytest.StashKey[Counter[str]]()


@pytest.fixture
def case_counter(request: pytest.FixtureRequest) -> Counter[str]:
    """Cases sent per operation, summed over the session."""
    return request.config.stash.setdefault(CASES, Counter())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker hands its counts to the controller, which reports them."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["schemathesis_cases"] = dict(session.config.stash.get(CASES, Counter()))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the pytest-xdist controller: a worker's counts, added to the session's."""
    config: pytest.Config = node.config  # type: ignore[attr-defined]
    counts = node.workeroutput.get("schemathesis_cases", {})  # type: ignore[attr-defined]
    config.stash.setdefault(CASES, Counter()).update(counts)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    counts = config.stash.get(CASES, Counter())
    if counts:
        terminalreporter.write_line(
            f"schemathesis: {sum(counts.values())} generated cases over {len(counts)} operations"
        )
