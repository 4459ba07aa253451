"""The schemathesis tier: counts the generated cases and reports them after the run."""

from __future__ import annotations

from collections import Counter

import pytest

CASES = pytest.StashKey[Counter[str]]()


@pytest.fixture
def case_counter(request: pytest.FixtureRequest) -> Counter[str]:
    """Cases sent per operation, summed over the session."""
    return request.config.stash.setdefault(CASES, Counter())


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    counts = config.stash.get(CASES, Counter())
    if counts:
        terminalreporter.write_line(
            f"schemathesis: {sum(counts.values())} generated cases over {len(counts)} operations"
        )
