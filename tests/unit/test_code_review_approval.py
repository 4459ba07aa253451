"""The code review with a person's approval before the fixer edits
(``examples/code_review_approval.json``): the walkthrough's graph (``code_review.json``,
unchanged, one command) with an ``interrupt`` node between the evaluation and the fixer and
a branch on its answer. Approved, the fixer runs and the review goes on (asking again before
each round of fixes); rejected, the run ends with the code as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import RunService
from engine.toolkits.code_review import toolkit as code_review

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLE = (EXAMPLES / "sample_code.py").read_text()


def doc(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return loaded


class Review:
    def __init__(self) -> None:
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.service = RunService(self.store, self.queue, code_review)
        self.graph_id = self.service.create_graph(doc("code_review_approval.json"))[0].graph_id
        run, _ = self.service.start_run(self.graph_id, {"code": SAMPLE})
        self.run_id = run.run_id
        self.drain()

    def drain(self) -> None:
        self.queue.drain(lambda hop: self.service.process_hop(hop, "d"))

    def answer(self, value: bool) -> None:
        self.service.resume_run(self.run_id, value)
        self.drain()

    @property
    def run(self) -> Any:
        return self.store.get_run(self.run_id)

    def nodes(self) -> list[str]:
        return [s.node for s in self.store.list_steps(self.run_id).items]


def test_it_is_the_walkthrough_graph_with_an_approval_before_the_fixer() -> None:
    plain, gated = doc("code_review.json"), doc("code_review_approval.json")
    approve = gated["nodes"].pop("approve")
    assert approve == {"interrupt": {"prompt": "Apply these fixes?", "key": "approved",
                                     "schema": {"type": "boolean"}}}  # fmt: skip
    assert gated["branches"].pop("approve") == {
        "cases": [{"when": "approved", "to": "improve"}], "default": "END"}  # fmt: skip
    gated["branches"]["evaluate"]["default"] = "improve"
    assert {**gated, "name": plain["name"]} == plain


def test_approved_the_fixer_runs() -> None:
    review = Review()
    # Given the review paused before its first fixes, with the suggestions to read
    assert review.run.status == "paused"
    (question,) = review.service.pending_questions(review.run)
    assert (question["task"], question["prompt"]) == ("approve", "Apply these fixes?")
    assert review.run.state["suggestions"] and "improve" not in review.nodes()
    # When a person approves
    review.answer(True)
    # Then the fixer edits the code, and the review goes on (asking before every round)
    assert "improve" in review.nodes()
    assert review.run.state["code"] != SAMPLE and review.run.state["fixes_applied"]
    rounds = 1
    while review.run.status == "paused":
        review.answer(True)
        rounds += 1
    assert review.run.status == "completed"
    assert review.nodes().count("improve") == rounds
    assert review.run.state["quality_score"] >= 7 or review.run.state["iteration"] >= 5


def test_rejected_the_fixer_does_not_run() -> None:
    review = Review()
    review.answer(False)
    run = review.run
    assert run.status == "completed"
    assert (run.state["approved"], run.state["code"]) == (False, SAMPLE)
    assert "improve" not in review.nodes() and "fixes_applied" not in run.state
    assert review.nodes()[-2:] == ["evaluate", "approve"]
