"""Known sandbox escapes and resource bombs: each is refused, or fails harmlessly.

"Harmlessly" means: a ConditionSyntaxError when the graph is created, or a bool or a
ConditionEvaluationError when the condition runs, within one second and 50 MB. Those bounds
are safety limits, far above the real cost; they are not a speed test.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any, Literal

import pytest

from engine.conditions import compile_condition
from engine.errors import ConditionEvaluationError, ConditionSyntaxError

Outcome = Literal["refused", "failed", "harmless"]

TIME_LIMIT_S = 1.0
MEMORY_LIMIT = 50 * 1024 * 1024

STATE: dict[str, Any] = {
    "x": 1, "s": "%*d", "text": "abc", "items": [1, 2, 3], "l": [1, 2, 3], "n": 10**9,
}  # fmt: skip

MANY_REPETITIONS = "[" + ",".join(["[0]*99999"] * 90) + "]"
MANY_SLICES = "(" + ",".join(["big[1:]"] * 100) + ")"

CORPUS: list[tuple[str, Outcome, str]] = [
    # attribute walks to object.__subclasses__ and friends
    ("().__class__.__bases__[0].__subclasses__()", "refused", "attribute access"),
    ("x.__class__", "refused", "attribute access"),
    ("x.__class__.__mro__[-1]", "refused", "attribute access"),
    ("x[0].__class__", "refused", "attribute access"),
    ("get.__globals__", "refused", "attribute access"),
    ("len.__self__", "refused", "attribute access"),
    ("max.__call__(1)", "refused", "attribute access"),
    ("f'{x.__class__}'", "refused", "f-strings"),
    ("'{0.__class__}'.format(x)", "refused", "attribute access"),
    # builtins, imports and code execution
    ("__import__('os').system('x')", "refused", "attribute access"),
    ("__builtins__", "refused", "names starting with __"),
    ("__builtins__['eval']('1')", "refused", "only these functions"),
    ("(y := __import__)", "refused", ":="),
    ("getattr(x, 'y')", "refused", "is not allowed"),
    ("type(x)", "refused", "is not allowed"),
    ("eval('1')", "refused", "is not allowed"),
    ("exec('1')", "refused", "is not allowed"),
    ("compile('1', '', 'eval')", "refused", "is not allowed"),
    ("open('/etc/passwd')", "refused", "is not allowed"),
    ("globals()", "refused", "is not allowed"),
    ("vars()", "refused", "is not allowed"),
    ("breakpoint()", "refused", "is not allowed"),
    ("import os", "refused", "invalid syntax"),
    # closures and generators that could leak frames
    ("[c for c in ()]", "refused", "comprehensions"),
    ("(lambda: 1)()", "refused", "only these functions"),
    ("(c for c in ()).gi_frame", "refused", "attribute access"),
    ("(yield x)", "refused", "yield"),
    # the compiled lambda's own names are only state keys
    ("_S", "failed", "missing state key"),
    ("_pow", "failed", "missing state key"),
    ("get('__builtins__')", "harmless", ""),
    ("'__class__' in text", "harmless", ""),
    # format-string tricks
    ("'%s' % x", "refused", "string formatting"),
    ('"%*d" % (10**9, 1)', "refused", "string formatting"),
    ("s % (10**9, 1)", "failed", "string formatting"),
    # arithmetic bombs
    ("9**9**9**9", "failed", "exponent is too large"),
    ("10**100000", "failed", "exponent is too large"),
    ("2**x**n", "failed", "exponent is too large"),
    ("999**9999 * 999**9999", "failed", "product is too large"),
    ("1 << 10**9", "refused", "operator <<"),
    ("round(5, -10**9)", "failed", "ndigits is too large"),
    ("999**4000 / 1", "failed", "OverflowError"),
    ("{}[999**4000]", "failed", "KeyError"),
    ("items[10**100]", "failed", "IndexError"),
    # memory bombs
    ('"a"*10**9', "failed", "repetition result is too long"),
    ("[1]*10**9", "failed", "repetition result is too long"),
    ("10**9*[1]", "failed", "repetition result is too long"),
    ("text * n", "failed", "repetition result is too long"),
    ("items * 30000 + items * 30000", "failed", "concatenation result is too long"),
    (MANY_REPETITIONS, "failed", "repetition result is too long"),
    ("len('a' * 99999) > 0", "harmless", ""),
    # work bombs: small values (100,000 references to one list) that a comparison, min, max,
    # a membership test or a hash would walk 10**10 elements of
    ("[l * 33333] * 100000 == [l * 33333] * 100000", "failed", "work budget exceeded"),
    ("[l * 33333] * 100000 < [l * 33333] * 100000", "failed", "work budget exceeded"),
    ("max([l * 33333] * 100000)", "failed", "work budget exceeded"),
    ("min([l * 33333] * 100000)", "failed", "work budget exceeded"),
    ("all([l * 33333] * 100000)", "failed", "work budget exceeded"),
    ("l * 33333 in [l * 33333] * 100000", "failed", "work budget exceeded"),
    ("{((0,) * 99999,) * 100000}", "failed", "work budget exceeded"),
    ("{((0,) * 99999,) * 100000: 1}", "failed", "work budget exceeded"),
    ("{}[((0,) * 99999,) * 100000]", "failed", "work budget exceeded"),
    ("get(((0,) * 99999,) * 100000)", "failed", "work budget exceeded"),
    ("['a' * 99999] * 100000 == ['a' * 99999] * 100000", "failed", "work budget exceeded"),
    ("(l * 3333)[1:] == (l * 3333)[1:] == (l * 3333)[1:]", "harmless", ""),
    ("'a' in [l * 33333] * 100000", "harmless", ""),
    ("len([l * 33333] * 100000) == 100000", "harmless", ""),
    # parser and compiler bombs
    ("(" * 5000 + "1" + ")" * 5000, "refused", "longer than 1000"),
    ("(" * 400 + "1" + ")" * 400, "refused", "too many nested parentheses"),
    ("[" * 400 + "]" * 400, "refused", "too many nested parentheses"),
    ("not " * 10_000 + "x", "refused", "longer than 1000"),
    ("not " * 200 + "x", "refused", "nested too deeply"),
    ("-" * 999 + "1", "refused", "nested too deeply"),
    ("+".join(["x"] * 400), "refused", "nested too deeply"),
    ("[" + "-1," * 300 + "]", "refused", "more than 500 syntax nodes"),
    ("(" * 30 + "1" + ")" * 30, "harmless", ""),
    # huge literals
    ("9" * 5_000, "refused", "longer than 1000"),
    ("9" * 999, "harmless", ""),
    ("0x" + "f" * 998, "harmless", ""),
    ("'" + "a" * 998 + "'", "harmless", ""),
]


def _attempt(source: str, state: dict[str, Any]) -> tuple[Outcome, str]:
    try:
        condition = compile_condition(source)
    except ConditionSyntaxError as exc:
        return "refused", str(exc)
    try:
        assert isinstance(condition(state), bool)
    except ConditionEvaluationError as exc:
        return "failed", str(exc)
    return "harmless", ""


def _bounded_attempt(source: str, state: dict[str, Any]) -> tuple[Outcome, str, float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome, message = _attempt(source, state)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, message, elapsed, peak


@pytest.mark.parametrize(
    ("source", "expected", "reason"),
    CORPUS,
    ids=[f"{i:02d}-{case[0][:40]}" for i, case in enumerate(CORPUS)],
)
def test_escape_fails_harmlessly(source: str, expected: Outcome, reason: str) -> None:
    # Given a known escape or bomb
    # When it is compiled and, if that succeeds, evaluated
    outcome, message, elapsed, peak = _bounded_attempt(source, STATE)
    # Then it is refused, or fails with the condition error only, for the expected reason
    assert (outcome, reason in message) == (expected, True), message
    # And within bounded time and memory
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.3f} s"
    assert peak < MEMORY_LIMIT, f"peaked at {peak / 1e6:.1f} MB"


def test_slices_of_a_big_state_value_cannot_multiply_it() -> None:
    # Given a state holding a long list, and a condition copying it a hundred times
    state = {"big": list(range(200_000))}
    # When it is evaluated
    outcome, message, elapsed, peak = _bounded_attempt(MANY_SLICES, state)
    # Then the slice budget refuses it before the copies exist
    assert outcome == "failed"
    assert "slice result is too long" in message
    assert elapsed < TIME_LIMIT_S
    assert peak < MEMORY_LIMIT


def test_error_messages_survive_unprintable_values() -> None:
    # Given a KeyError whose key is an int too long to turn into text
    condition = compile_condition("{}[999**4000]")
    # Then the error still has a message (without the key)
    with pytest.raises(ConditionEvaluationError, match=r"failed: KeyError$"):
        condition({})
