"""Every run survives each kind of fault: it ends, each step is committed exactly once and in
order, and it ends as the in-process runner's run of the same graph and input does.

Each kind drives 50 runs at once (batches of 10, as Lambda's event source takes them): 10 of
a 20-step loop and 40 of the code-review graph on the sample code and two small variants
(11, 5 and 11 steps); and, on supersteps of several tasks, runs of a fan-out, a join of
branches of unequal length and a map of 50 items capped at 5 at a time, joined with a
branch of its own.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import KINDS, FaultHarness
from tests.faults.moto_speedups import faster_moto
from tests.functional.aws_stack import AwsStack, aws_stack, code_review_graph, sample_code

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOOP_20 = {
    "name": "loop_20",
    "entry": "inc",
    "nodes": {
        "inc": {"tool": "increment", "settings": {"key": "count"}},
        "visit": {"tool": "record_visit"},
    },
    "edges": {"inc": "visit"},
    "branches": {"visit": {"cases": [{"when": "count >= 10", "to": "END"}], "default": "inc"}},
}
CODE_VARIANTS = [
    sample_code(),
    "def add(a, b):\n    return a + b\n",
    "import os\ndef f(x,y):\n    if x:\n        if y:\n            return 1\n    return 2\n",
]
FAN_OUT = json.loads((EXAMPLES / "langgraph" / "fanout_reducer.json").read_text())
JOIN_UNEQUAL = json.loads((EXAMPLES / "langgraph" / "join_unequal.json").read_text())
MAP_50_JOINED = {
    "entry": "split",
    "state": {"graded": {"reducer": "append"}, "total": {"reducer": "add"}},
    "nodes": {
        "split": {"tool": "set_values", "settings": {"values": {"started": True}}},
        "grade": {"tool": "fill", "settings": {"key": "graded", "template": "doc $doc"},
                  "map": {"over": "docs", "as": "doc", "max_concurrency": 5}},
        "count": {"tool": "emit", "settings": {"key": "total", "value": 1}},
        "done": {"tool": "set_values", "settings": {"values": {"finished": True}}},
    },
    "edges": {"split": ["grade", "count"], "done": "END"},
    "joins": {"done": ["grade", "count"]},
}  # fmt: skip
RATES = {
    "crash_before_tool": 0.05,
    "crash_before_commit": 0.05,
    "crash_after_commit": 0.05,
    "crash_before_ack": 0.2,
    "duplicate_delivery": 1.0,
    "out_of_order": 1.0,
    "concurrent_workers": 0.3,
    "throttled_commit": 0.15,
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with faster_moto(), aws_stack(monkeypatch) as s:
        yield s


@pytest.mark.parametrize("kind", KINDS)
def test_every_run_ends_exactly_once_as_in_process(stack: AwsStack, kind: str) -> None:
    # Given 50 runs in flight (10 loops of 20 steps, 40 code reviews) and one kind of fault
    harness = FaultHarness(stack, kind, rate=RATES[kind], seed=zlib.crc32(kind.encode()))
    harness.start(harness.workload(LOOP_20, {}), 10)
    for code, runs in zip(CODE_VARIANTS, (12, 16, 12), strict=True):
        harness.start(harness.workload(code_review_graph(), {"code": code}), runs)
    # And runs whose supersteps have several tasks
    harness.start(harness.workload(FAN_OUT, {"aggregate": []}), 3)
    harness.start(harness.workload(JOIN_UNEQUAL, {"aggregate": []}), 3)
    harness.start(harness.workload(MAP_50_JOINED, {"docs": list(range(50))}), 1)
    # When the worker fleet drives them through the faults
    harness.drive()
    # Then the faults did strike, and every run kept the invariant
    print(harness.summary())
    assert harness.faults.injected[kind] >= 10, harness.summary()
    harness.check()
