"""What a graph declares about waiting for a person: an ``interrupt`` node's question, the
graph's static breakpoints (``interrupt_before`` / ``interrupt_after``), and the check of an
answer against its question's JSON schema. Pure functions; the protocol's hooks are
:mod:`engine.pauses`.

An interrupt node::

    "approve": {"interrupt": {"prompt": "Approve the plan?", "key": "approved",
                              "schema": {"type": "boolean"}, "timeout_s": 86400,
                              "on_timeout": "escalate"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from engine.retry_policy import Report

MAX_PAUSE_S = 365 * 86_400.0
"""The longest a question may wait for its answer."""


@dataclass(frozen=True, slots=True)
class Question:
    """What a paused task asks: ``prompt`` for the person, ``key`` the state key the answer
    is written under (``None``: the answer only decides where to go, by the node's edges),
    ``schema`` the answer's JSON schema, and what happens ``timeout_s`` after it was asked
    (``on_timeout``: the node the run goes to; without it the run fails)."""

    prompt: str | None = None
    key: str | None = None
    schema: Mapping[str, Any] | None = None
    timeout_s: float | None = None
    on_timeout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name in ("prompt", "key", "timeout_s", "on_timeout"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        if self.schema is not None:
            doc["schema"] = dict(self.schema)
        return doc


def read_question(spec: Any, loc: str, report: Report) -> Question | None:
    """An ``interrupt`` object as written, checked; problems go to ``report`` (its
    ``on_timeout`` node is checked by the graph's validation, which knows the nodes)."""
    if not isinstance(spec, Mapping):
        report(loc, 'must be an object: {"prompt": "...", "key": "<state key>", "schema": {...}}')
        return None
    ok = True
    prompt, key, schema = spec.get("prompt"), spec.get("key"), spec.get("schema")
    timeout, on_timeout = spec.get("timeout_s"), spec.get("on_timeout")
    for name, value in (("prompt", prompt), ("key", key), ("on_timeout", on_timeout)):
        if value is not None and (not isinstance(value, str) or not value):
            report(f"{loc}.{name}", "must be a non-empty string")
            ok = False
    if schema is not None and not _schema_ok(schema, f"{loc}.schema", report):
        ok = False
    if timeout is not None:
        number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
        if not number or not 0 < timeout <= MAX_PAUSE_S:
            report(
                f"{loc}.timeout_s", f"must be a number of seconds above 0, at most {MAX_PAUSE_S:g}"
            )
            ok = False
    if on_timeout is not None and timeout is None:
        report(f"{loc}.on_timeout", "needs timeout_s: it says where to go once that has passed")
        ok = False
    if not ok:
        return None
    return Question(prompt, key, dict(schema) if schema is not None else None,
                    float(timeout) if timeout is not None else None, on_timeout)  # fmt: skip


def _schema_ok(schema: Any, loc: str, report: Report) -> bool:
    if not isinstance(schema, Mapping):
        report(loc, 'must be a JSON schema object, e.g. {"type": "boolean"}')
        return False
    try:
        validator_for(schema).check_schema(dict(schema))
    except SchemaError as exc:
        report(loc, f"is not a valid JSON schema: {exc.message}")
        return False
    return True


def answer_problem(schema: Mapping[str, Any] | None, value: Any) -> str | None:
    """Why ``value`` does not answer a question of ``schema`` (``None``: it does)."""
    if schema is None:
        return None
    error = jsonschema.exceptions.best_match(validator_for(schema)(dict(schema)).iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" for p in error.absolute_path)
    return f"the value{where} does not match the question's schema: {error.message}"


def read_breakpoints(value: Any, loc: str, report: Report) -> frozenset[str] | None:
    """``interrupt_before`` / ``interrupt_after`` as written: a list of node ids (checked
    against the graph's nodes by its validation)."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        report(loc, "must be a list of node ids")
        return None
    return frozenset(value)


@dataclass(frozen=True, slots=True)
class Breakpoints:
    """Static breakpoints: the nodes a run pauses before, and after (its graph's and its
    own, ``POST /runs``)."""

    before: frozenset[str] = frozenset()
    after: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, list[str]] | None:
        """As records keep them (``None``: none)."""
        if not self.before and not self.after:
            return None
        return {"before": sorted(self.before), "after": sorted(self.after)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Breakpoints:
        if not doc:
            return NO_BREAKPOINTS
        return cls(frozenset(doc.get("before") or ()), frozenset(doc.get("after") or ()))


NO_BREAKPOINTS = Breakpoints()


def check_breakpoints(graph: Any, breakpoints: Breakpoints) -> None:
    """Refuse a run's own breakpoints that name no node of its graph (422, with where)."""
    from engine.errors import InvalidInputError

    for name, nodes in (("interrupt_before", breakpoints.before),
                        ("interrupt_after", breakpoints.after)):  # fmt: skip
        unknown = sorted(n for n in nodes if n not in graph.nodes)
        if unknown:
            known = ", ".join(sorted(graph.nodes))
            raise InvalidInputError(f"{name}: the graph has no node {unknown[0]!r} (its nodes: "
                                    f"{known})")  # fmt: skip
