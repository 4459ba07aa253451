"""The condition language: what it accepts, what it refuses, and how it fails."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import conditions
from engine.conditions import FUNCTIONS, Condition, compile_condition
from engine.errors import ConditionError, ConditionEvaluationError, ConditionSyntaxError

# -- what the language accepts ------------------------------------------------------------------

FEATURES: list[tuple[str, dict[str, Any], bool]] = [
    # comparisons, chained comparisons, boolean operators
    ("quality_score >= 7 or iteration >= 5", {"quality_score": 3, "iteration": 5}, True),
    ("quality_score >= 7 or iteration >= 5", {"quality_score": 3, "iteration": 4}, False),
    ("x == 'a'", {"x": "a"}, True),
    ("x != 2", {"x": 2}, False),
    ("x < 2", {"x": 1.5}, True),
    ("x > 2", {"x": 1.5}, False),
    ("1 < x <= 5", {"x": 5}, True),
    ("1 < x <= 5", {"x": 1}, False),
    ("1 < x <= 5", {"x": 6}, False),
    ("a and not b", {"a": 1, "b": 0}, True),
    ("a or b", {"a": 0, "b": ""}, False),
    ("not (a and b)", {"a": True, "b": False}, True),
    # arithmetic
    ("x + 1 == 3", {"x": 2}, True),
    ("x + y == 5", {"x": 2, "y": 3}, True),
    ("x - y * 2 == 0", {"x": 4, "y": 2}, True),
    ("x / 4 == 0.5", {"x": 2}, True),
    ("x // 4 == 1", {"x": 7}, True),
    ("x % 4 == 3", {"x": 7}, True),
    ("10 % x == 1", {"x": 3}, True),
    ("x ** 2 == 49", {"x": 7}, True),
    ("2 ** -1 == 0.5", {}, True),
    ("-x == -3", {"x": 3}, True),
    ("+x == 3", {"x": 3}, True),
    ("s + '!' == 'hi!'", {"s": "hi"}, True),
    ("items + [3] == [1, 2, 3]", {"items": [1, 2]}, True),
    ("'ab' * 2 == 'abab'", {}, True),
    ("2 * [0] == [0, 0]", {}, True),
    # membership and identity
    ("'a' in tags", {"tags": ["a", "b"]}, True),
    ("x not in [1, 2]", {"x": 3}, True),
    ("'ell' in s", {"s": "hello"}, True),
    ("'k' in d", {"d": {"k": 1}}, True),
    ("x in {1, 2}", {"x": 2}, True),
    ("x is None", {"x": None}, True),
    ("x is not None", {"x": 0}, True),
    ("flag is True", {"flag": True}, True),
    ("None is x", {"x": 1}, False),
    # literals and truthiness
    ("x == [1, 2]", {"x": [1, 2]}, True),
    ("x == (1, 2)", {"x": (1, 2)}, True),
    ("x == {'a': 1}", {"x": {"a": 1}}, True),
    ("x == 1.5e3", {"x": 1500}, True),
    ("True", {}, True),
    ("None", {}, False),
    ("0.0", {}, False),
    ("''", {}, False),
    ("'text'", {}, True),
    ("items", {"items": []}, False),
    ("items", {"items": [0]}, True),
    # subscripts and slices
    ('scores["a"] > 5', {"scores": {"a": 6}}, True),
    ("items[0] == 1", {"items": [1, 2, 3]}, True),
    ("items[-1] == 3", {"items": [1, 2, 3]}, True),
    ("items[1:] == [2, 3]", {"items": [1, 2, 3]}, True),
    ("items[::2] == [1, 3]", {"items": [1, 2, 3]}, True),
    ("items[:-1][::-1] == [2, 1]", {"items": [1, 2, 3]}, True),
    ("s[:2] == 'he'", {"s": "hello"}, True),
    ("m['k'][0] == 1", {"m": {"k": [1]}}, True),
    # ternary
    ("(x if flag else y) > 3", {"x": 5, "y": 1, "flag": True}, True),
    ("(x if flag else y) > 3", {"x": 5, "y": 1, "flag": False}, False),
    # the whitelisted functions
    ("len(items) == 3", {"items": [1, 2, 3]}, True),
    ("min(items) == 1", {"items": [3, 1, 2]}, True),
    ("min(x, y) == 1", {"x": 1, "y": 2}, True),
    ("max(x, y, 3) == 3", {"x": 1, "y": 2}, True),
    ("abs(x) == 2", {"x": -2}, True),
    ("round(x) == 3", {"x": 2.6}, True),
    ("round(x, 1) == 2.3", {"x": 2.34}, True),
    ("any(flags)", {"flags": [False, True]}, True),
    ("all(flags)", {"flags": [False, True]}, False),
    ("get('k') is None", {}, True),
    ("get('k', 3) == 3", {}, True),
    ("get('k', 3) == 1", {"k": 1}, True),
    ("get('odd-key') == 2", {"odd-key": 2}, True),
    ("get(name) == 2", {"name": "k", "k": 2}, True),
    # a bare function name is a state key, not the function
    ("len > 1", {"len": 2}, True),
]


@pytest.mark.parametrize(("source", "state", "expected"), FEATURES)
def test_feature(source: str, state: dict[str, Any], expected: bool) -> None:
    # Given a condition that uses one feature of the language
    condition = compile_condition(source)
    # When it is evaluated on a state
    result = condition(state)
    # Then its truth is Python's, as a bool
    assert result is expected


def test_the_function_whitelist() -> None:
    assert frozenset({"len", "min", "max", "abs", "round", "any", "all", "get"}) == FUNCTIONS


def test_names_are_the_state_keys_read() -> None:
    # Given a condition reading state keys as names, through get and under functions
    condition = compile_condition("a > 1 and b['k'] or get('c', 0) > len(d) and get(e)")
    # Then names holds the bare names and the constant keys of get(), not function names
    assert condition.names == frozenset({"a", "b", "c", "d", "e"})
    assert compile_condition("True").names == frozenset()


def test_get_tolerates_a_missing_key_but_a_bare_name_does_not() -> None:
    # Given a state without "c"
    state = {"a": 1}
    # Then get("c") reads None while the bare name is a missing key
    assert compile_condition("get('c') is None and a == 1")(state) is True
    with pytest.raises(ConditionEvaluationError, match="missing state key 'c'"):
        compile_condition("c")(state)


def test_condition_is_immutable_equal_by_source_and_picklable() -> None:
    # Given two compilations of the same text
    first = compile_condition("x > 1")
    second = compile_condition("x > 1")
    # Then they are equal, hash alike and differ from another text
    assert first == second
    assert hash(first) == hash(second)
    assert first != compile_condition("x > 2")
    assert "x > 1" in repr(first)
    # And they cannot be changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.source = "True"  # type: ignore[misc]
    # And pickling or copying recompiles them from the source
    for clone in (pickle.loads(pickle.dumps(first)), copy.deepcopy(first)):
        assert isinstance(clone, Condition)
        assert clone == first
        assert clone({"x": 2}) is True


def test_evaluation_reads_any_mapping() -> None:
    from types import MappingProxyType

    state = MappingProxyType({"x": 2})
    assert compile_condition("x > 1 and get('y', 0) == 0")(state) is True


# -- what the language refuses ------------------------------------------------------------------

REFUSALS: list[tuple[str, str]] = [
    ("x.y", "attribute access is not allowed: .y"),
    ("x.__class__", "attribute access is not allowed: .__class__"),
    ("'{}'.format(x)", "attribute access is not allowed: .format"),
    ("__class__", "names starting with __ are reserved"),
    ("__builtins__", "names starting with __ are reserved"),
    ("__import__('os')", "'__import__' is not allowed"),
    ("lambda: 1", "lambdas not allowed"),
    ("(lambda: 1)()", "only these functions can be called"),
    ("[c for c in x]", "comprehensions not allowed"),
    ("{c for c in x}", "comprehensions not allowed"),
    ("{c: 1 for c in x}", "comprehensions not allowed"),
    ("any(c for c in x)", "comprehensions not allowed"),
    ("f'{x}'", "f-strings not allowed"),
    ("(y := 1)", "assignment expressions (:=) not allowed"),
    ("len(*x)", "* unpacking not allowed"),
    ("{**x}", "** unpacking is not allowed"),
    ("(yield x)", "await and yield not allowed"),
    ("open('f')", "function 'open' is not allowed"),
    ("eval('1')", "function 'eval' is not allowed"),
    ("round(x, ndigits=2)", "keyword arguments are not allowed: round(ndigits=...)"),
    ("max(**x)", "keyword arguments are not allowed"),
    ("len()", "len() takes 1 argument, got 0"),
    ("len(x, y)", "len() takes 1 argument, got 2"),
    ("get(1, 2, 3)", "get() takes 1 to 2 arguments, got 3"),
    ("1 << 2", "operator << is not allowed"),
    ("x >> 1", "operator >> is not allowed"),
    ("x | y", "operator | is not allowed"),
    ("x & y", "operator & is not allowed"),
    ("x ^ y", "operator ^ is not allowed"),
    ("x @ y", "operator @ is not allowed"),
    ("~x", "operator ~ is not allowed"),
    ("'%s' % x", "string formatting with % is not allowed"),
    ("x is 1", "'is' and 'is not' only compare with None, True or False"),
    ("x is not y", "'is' and 'is not' only compare with None, True or False"),
    ("b'x'", "bytes literals are not allowed"),
    ("1j", "complex literals are not allowed"),
    ("...", "ellipsis literals are not allowed"),
    ("1[0]", "not subscriptable"),
    ("x" * 1_001, "longer than 1000 characters"),
    ("-" * 60 + "x", "nested too deeply (more than 50 levels)"),
    ("[" + "-1," * 300 + "]", "too long (more than 500 syntax nodes)"),
]


@pytest.mark.parametrize(("source", "reason"), REFUSALS)
def test_refusal(source: str, reason: str) -> None:
    # Given a condition using something the language refuses
    # When it is compiled
    with pytest.raises(ConditionSyntaxError) as caught:
        compile_condition(source)
    # Then the error names the construct (and quotes the condition)
    assert reason in str(caught.value)
    assert str(caught.value).startswith("condition ")


@pytest.mark.parametrize(
    "source", ["", "   ", "x +", "x = 1", "import os", "if x: y", "x; y", "(", "x y", "\x00", "*x"]
)
def test_syntax_errors(source: str) -> None:
    with pytest.raises(ConditionSyntaxError, match="condition "):
        compile_condition(source)


def test_a_condition_must_be_a_string() -> None:
    with pytest.raises(ConditionSyntaxError, match="must be a string, not int"):
        compile_condition(42)  # type: ignore[arg-type]


def test_huge_integer_literals_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the length limit lifted, so that only the literal limits are left
    monkeypatch.setattr(conditions, "MAX_SOURCE_CHARS", 100_000)
    # Then a decimal literal above 4,300 digits is refused by the parser's own limit
    with pytest.raises(ConditionSyntaxError, match="4300"):
        compile_condition("9" * 5_000)
    # And a hexadecimal one (which that limit does not cover) by ours
    with pytest.raises(ConditionSyntaxError, match="integer literal is too large"):
        compile_condition("0x" + "f" * 4_000)


# -- how evaluation fails -----------------------------------------------------------------------


def test_missing_key_message_names_the_key() -> None:
    # Given a condition reading a key the state does not have
    condition = compile_condition("score > 3")
    # When it is evaluated
    with pytest.raises(ConditionEvaluationError) as caught:
        condition({"other": 1})
    # Then the message names the condition and the key
    assert str(caught.value) == "condition 'score > 3' reads missing state key 'score'"


class _Hostile:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth here")


EVALUATION_FAILURES: list[tuple[str, dict[str, Any], str]] = [
    ('scores["b"] > 1', {"scores": {"a": 1}}, "KeyError: 'b'"),
    ("items[5]", {"items": [1]}, "IndexError"),
    ("x > 1", {"x": "a"}, "TypeError"),
    ("1 / x", {"x": 0}, "ZeroDivisionError"),
    ("x / 3", {"x": 10**400}, "OverflowError"),
    ("max(items)", {"items": []}, "ValueError"),
    ("items[::0]", {"items": [1]}, "ValueError"),
    ("{x: 1}", {"x": [1]}, "TypeError"),
    ("len(x)", {"x": 5}, "TypeError"),
    ("s % 1", {"s": "%d"}, "string formatting with % is not allowed"),
    ("2 ** x", {"x": 10**6}, "exponent is too large"),
    ("s * x", {"s": "ab", "x": 10**9}, "repetition result is too long"),
    ("x", {"x": _Hostile()}, "RuntimeError: no truth here"),
]


@pytest.mark.parametrize(("source", "state", "reason"), EVALUATION_FAILURES)
def test_evaluation_failure(source: str, state: dict[str, Any], reason: str) -> None:
    # Given a valid condition and a state it cannot be evaluated on
    condition = compile_condition(source)
    # When it is evaluated
    with pytest.raises(ConditionEvaluationError) as caught:
        condition(state)
    # Then the error quotes the condition and says why
    assert str(caught.value).startswith(f"condition {source!r} ")
    assert reason in str(caught.value)


# -- the work budget ----------------------------------------------------------------------------


def _nested(rows: int) -> list[list[int]]:
    """``rows`` references to one list of 1,000 zeros: small in memory, heavy to compare."""
    return [[0] * 1000] * rows


def test_work_beyond_the_budget_fails_naming_the_budget() -> None:
    # Given two state values that weigh 3,000,000 elements each, 6,000,000 to compare
    condition = compile_condition("a == b")
    state = {"a": _nested(3000), "b": _nested(3000)}
    # When the condition compares them
    with pytest.raises(ConditionEvaluationError) as caught:
        condition(state)
    # Then it is refused, and the message names the budget
    assert "work budget exceeded" in str(caught.value)
    assert f"{conditions.MAX_WORK:,} elements per evaluation" in str(caught.value)


def test_work_within_the_budget_is_done_and_each_evaluation_has_its_own_budget() -> None:
    # Given a comparison that needs 2,000,000 of the 5,000,000 elements of the budget
    condition = compile_condition("a == b and max(a) == min(b)")
    state = {"a": _nested(1000), "b": _nested(1000)}
    # When it is evaluated three times (6,000,000 in all)
    results = [condition(state) for _ in range(3)]
    # Then each evaluation gets the whole budget again
    assert results == [True, True, True]


@pytest.mark.parametrize(
    "source",
    [
        "quality_score >= 7 or iteration >= 5",
        "status in ['done', 'failed'] and x is not None",
        "items[0] == 1 and len(items) < 10 and 'a' != name",
    ],
)
def test_comparisons_with_constants_are_not_instrumented(source: str) -> None:
    # Given a condition whose comparisons all involve a constant (bounded by the constant)
    condition = compile_condition(source)
    # Then its compiled code calls no budget guard: it costs what it cost before the budget
    assert not {"_weigh", "_scan"} & set(condition._function.__code__.co_names)


def test_comparisons_of_two_state_values_are_charged() -> None:
    # Given conditions that compare state values with each other or look for a value
    walked = compile_condition("iteration >= max_iterations")
    scanned = compile_condition("'a' in tags")
    # Then their operands go through the budget
    assert "_weigh" in walked._function.__code__.co_names
    assert "_scan" in scanned._function.__code__.co_names


# -- properties ---------------------------------------------------------------------------------

STATE_NAMES = ("a", "b", "c")
ATOMS = st.one_of(
    st.integers(-1_000, 1_000).map(str),
    st.sampled_from(["True", "False", "None", *STATE_NAMES, "get('a')", "get('z', 3)"]),
)
BINARY = ["+", "-", "*", "/", "//", "%", "<", "<=", ">", ">=", "==", "!=", "and", "or"]
CALLS = ["abs({0})", "min({0}, {1})", "max([{0}, {1}])", "len([{0}, {1}])", "round({0})"]
CALLS += ["round({0}, 1)", "any([{0}, {1}])", "all(({0}, {1}))", "[{0}, {1}][-1]"]
CALLS += ["({0} if {1} else {2})", "({0} < {1} <= {2})", "({0} in [{1}, {2}])"]
CALLS += ["({0} not in ({1}, {2}))", "({{'k': {0}}}['k'])", "[{0}, {1}, {2}][1:]"]


def _compound(sub: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    three = st.tuples(sub, sub, sub)
    return st.one_of(
        st.tuples(sub, st.sampled_from(BINARY), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(sub, st.sampled_from("012")).map(lambda t: f"(({t[0]}) ** {t[1]})"),
        st.tuples(st.sampled_from(["not ", "-", "+"]), sub).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(st.sampled_from(STATE_NAMES), st.sampled_from(["is", "is not"])).map(
            lambda t: f"({t[0]} {t[1]} None)"
        ),
        st.tuples(st.sampled_from(CALLS), three).map(lambda t: t[0].format(*t[1])),
    )


def _expressions(depth: int) -> st.SearchStrategy[str]:
    return ATOMS if depth == 0 else st.one_of(ATOMS, _compound(_expressions(depth - 1)))


EXPRESSIONS = _compound(_expressions(2))
VALUES = st.one_of(st.integers(-1_000, 1_000), st.booleans(), st.none())
STATES = st.fixed_dictionaries({name: VALUES for name in STATE_NAMES})
PYTHON_GLOBALS = {"__builtins__": {}, "len": len, "min": min, "max": max, "abs": abs}
PYTHON_GLOBALS.update(round=round, any=any, all=all)


@settings(max_examples=200, deadline=None)
@given(source=EXPRESSIONS, state=STATES)
def test_agrees_with_python_eval(source: str, state: dict[str, Any]) -> None:
    # Given an expression from the grammar and Python's own evaluation of the same text
    condition = compile_condition(source)
    python_globals = {**PYTHON_GLOBALS, "get": lambda key, default=None: state.get(key, default)}
    try:
        expected = bool(eval(source, python_globals, dict(state)))
    except Exception:
        # Then where Python fails, the condition fails with its own error only
        with pytest.raises(ConditionEvaluationError):
            condition(state)
    else:
        # And elsewhere it agrees with Python
        assert condition(state) is expected


@settings(max_examples=200, deadline=None)
@given(source=st.text(max_size=200))
def test_arbitrary_text_compiles_or_is_refused(source: str) -> None:
    with contextlib.suppress(ConditionSyntaxError):
        assert isinstance(compile_condition(source), Condition)


TOKENS = [*"abx_()[]{}.,:;+-*/%<>=!~|&^@'\"", "**", "//", "<<", "==", "0", "1", "9", "1.5"]
TOKENS += ["not", "and", "or", "in", "is", "if", "else", "for", "lambda", "None", "True"]
TOKENS += ["len", "get", "max", "round", "__class__", "__import__", "'%*d'", "'s'", ":="]


@settings(max_examples=200, deadline=None)
@given(source=st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup_compiles_or_is_refused_and_evaluates_safely(source: str) -> None:
    # Given text made of the language's own tokens, mostly invalid, sometimes not
    try:
        condition = compile_condition(source)
    except ConditionSyntaxError:
        return
    # When it does compile, then evaluating it gives a bool or a ConditionEvaluationError
    with contextlib.suppress(ConditionEvaluationError):
        assert isinstance(condition({"a": 1, "b": "b", "x": [1, 2]}), bool)


def test_errors_share_one_base() -> None:
    assert issubclass(ConditionSyntaxError, ConditionError)
    assert issubclass(ConditionEvaluationError, ConditionError)


# -- names are compared as written -------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        ("\ufb01le", "file"),  # the ligature fi
        ("\uff58", "x"),  # full-width x
        ("cafe\u0301", "caf\u00e9"),  # e + combining acute accent
        ("\u210cx", "Hx"),  # black-letter capital H
    ],
)
def test_a_name_python_would_read_as_another_is_refused(written: str, read_as: str) -> None:
    # Given a state holding both the key as written and the key Python would read instead
    state = {written: 1, read_as: 2}
    assert compile_condition(f"get({written!r}) == 1")(state) is True  # strings: as written
    # When a condition names the key bare, then it is refused, saying which key it would read
    with pytest.raises(ConditionSyntaxError, match="would be read as") as refused:
        compile_condition(f"{written} == 1")
    assert repr(read_as) in str(refused.value)


def test_names_already_normal_are_kept() -> None:
    assert compile_condition("caf\u00e9 == 1 and \u00fcber > 0")({"caf\u00e9": 1, "\u00fcber": 1})
    assert compile_condition("'\ufb01' == x")({"x": "\ufb01"})  # in a string: no name
