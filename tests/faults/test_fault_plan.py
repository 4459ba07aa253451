"""Every case of the fault plan (tests/faults/plan.py: fault x window x carrier x shape)
through the real worker handler on moto keeps the protocol's invariants: the run ends as the
in-process runner's, every task committed once, every superstep closed once, supersteps
published in order, no hop left, nothing dead-lettered, and the fault struck exactly once.

Mutation proof (each applied by hand, the plan run, red, then reverted):

MUTATIONS
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.fleet import CaseFleet
from tests.faults.moto_speedups import faster_moto
from tests.faults.plan import CASES, Case
from tests.functional.aws_stack import AwsStack, aws_stack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with faster_moto(), aws_stack(monkeypatch) as s:
        yield s


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_run_keeps_the_protocol_invariants(stack: AwsStack, case: Case) -> None:
    # Given the worker's adapters with one fault planned at its window, on the case's carrier
    fleet = CaseFleet(stack, case)
    # When one run of the case's graph shape is driven to the end through the real worker
    fleet.run()
    # Then it ended as the in-process runner's run did, and every invariant holds
    fleet.check()
