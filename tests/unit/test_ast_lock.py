"""The AST lock is held per parse, never per analysis: one big review stalls no other run."""

from __future__ import annotations

import threading
from typing import Any

from engine.conditions import compile_condition
from engine.toolkits.code_review import MAX_CODE_CHARS, improve_code
from engine.tools import ToolContext

FUNCTION = """
def handler_{i}(event, seen=[], *rest):
    total = 0
    if event:
        if seen:
            if rest:
                try:
                    return event + seen
                except:
                    pass
    return None
"""


def _big_module() -> str:
    """About 30 KB of code with something to fix in every function: a review of seconds."""
    code = "import os\n" + "".join(FUNCTION.format(i=i) for i in range(150))
    assert len(code) < MAX_CODE_CHARS
    return code


def test_conditions_compile_while_a_big_review_runs_in_another_thread() -> None:
    # Given a big review running on one thread (it parses and compiles its code many times)
    review_done = threading.Event()
    review_started = threading.Event()
    result: dict[str, Any] = {}

    def review() -> None:
        review_started.set()
        result.update(improve_code({"code": _big_module()}, ToolContext("r_big", "fix", 0)))
        review_done.set()

    reviewer = threading.Thread(target=review)
    reviewer.start()
    review_started.wait()
    # When another run compiles and evaluates small conditions meanwhile
    compiled_while_reviewing = 0
    while not review_done.is_set() and compiled_while_reviewing < 20:
        condition = compile_condition(f"quality_score >= {compiled_while_reviewing}")
        assert condition({"quality_score": 100})
        compiled_while_reviewing += not review_done.is_set()
    reviewer.join()
    # Then they finish while the review is still running (a lock held for the whole review
    # would let at most one of them through before the review ended)
    assert compiled_while_reviewing == 20
    # And the review itself is complete and correct
    kinds = {fix["kind"] for fix in result["fixes_applied"]}
    assert {"bare_except", "mutable_default"} <= kinds
