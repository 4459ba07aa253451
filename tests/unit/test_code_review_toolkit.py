"""The code-review toolkit: each tool on small snippets, and the review loop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from code_review_helpers import (
    CTX,
    LOOP,
    ROOT,
    SAMPLE,
    code,
    comments,
    issues_of,
)

from engine.toolkits.code_review import (
    MAX_CODE_CHARS,
    CodeReviewError,
    CodeSyntaxError,
    check_complexity,
    detect_issues,
    evaluate_quality,
    extract_functions,
    improve_code,
    suggest_improvements,
    toolkit,
)
from engine.tools import ToolError, call_tool, load_toolkits

# -- registration -------------------------------------------------------------------------------


def test_the_toolkit_loads_by_module_name_with_every_tool_and_the_alias() -> None:
    # When
    registry = load_toolkits(["engine.toolkits.code_review"])

    # Then
    assert registry.names() == [
        "calculate_complexity",
        "check_complexity",
        "detect_issues",
        "evaluate_quality",
        "extract_functions",
        "improve_code",
        "suggest_improvements",
    ]
    assert registry.get("calculate_complexity").fn is registry.get("check_complexity").fn
    assert registry.get("improve_code").describe()["parameters"] == {
        "reads": ["code", "issues"],
        "writes": ["code", "fixes_applied"],
    }


# -- extract_functions --------------------------------------------------------------------------

FUNCTIONS = code(
    '''
    def top(a, b=1, *rest, key, **options):
        """Documented."""

        def inner():
            return a

        return inner


    class Shape:
        @staticmethod
        def make(x, y):
            return x + y

        async def area(self, scale):
            return scale
    '''
)


def test_extract_functions_lists_functions_methods_and_nested_functions() -> None:
    # When
    functions = extract_functions({"code": FUNCTIONS}, CTX)["functions"]

    # Then
    assert functions == [
        {
            "name": "top",
            "qualname": "top",
            "lineno": 1,
            "end_lineno": 7,
            "args": 5,
            "length": 7,
            "has_docstring": True,
            "is_method": False,
        },
        {
            "name": "inner",
            "qualname": "top.inner",
            "lineno": 4,
            "end_lineno": 5,
            "args": 0,
            "length": 2,
            "has_docstring": False,
            "is_method": False,
        },
        {
            "name": "make",
            "qualname": "Shape.make",
            "lineno": 12,
            "end_lineno": 13,
            "args": 2,
            "length": 2,
            "has_docstring": False,
            "is_method": True,
        },
        {
            "name": "area",
            "qualname": "Shape.area",
            "lineno": 15,
            "end_lineno": 16,
            "args": 1,
            "length": 2,
            "has_docstring": False,
            "is_method": True,
        },
    ]


# -- check_complexity ---------------------------------------------------------------------------

BRANCHY = code(
    """
    def flat(x):
        return x


    def branchy(x, items):
        if x > 1 and x < 10:
            return 1
        elif x == 0:
            return 2
        for item in items:
            while item:
                item -= 1
        try:
            return [i for i in items if i]
        except ValueError:
            return 3


    class Box:
        def size(self):
            return 1 if self else 0
    """
)


def test_check_complexity_reports_radon_cyclomatic_complexity_per_qualname() -> None:
    # When
    result = check_complexity({"code": BRANCHY}, CTX)

    # Then: branchy = 1 + if + and + elif + for + while + comprehension (for, if) + except
    assert result == {
        "complexity": {"flat": 1, "branchy": 9, "Box.size": 2},
        "average_complexity": 4.0,
        "max_complexity": 9,
    }


def test_calculate_complexity_is_the_same_tool() -> None:
    # Given
    alias = toolkit.get("calculate_complexity")

    # When / Then
    assert call_tool(alias, {"code": BRANCHY}, CTX) == check_complexity({"code": BRANCHY}, CTX)


def test_check_complexity_of_code_without_functions_is_zero() -> None:
    assert check_complexity({"code": "x = 1\n"}, CTX) == {
        "complexity": {},
        "average_complexity": 0.0,
        "max_complexity": 0,
    }


# -- detect_issues ------------------------------------------------------------------------------

DOC = '"""Module."""\n'
ISSUE_CASES: list[tuple[str, str, list[tuple[str, int, str | None]]]] = [
    (
        "long_function",
        DOC + "def f():\n    '''Doc.'''\n" + "    x = 1\n" * 39 + "    return x\n",
        [("long_function", 2, "f")],
    ),
    (
        "too_many_arguments",
        DOC + "def f(a, b, c, d, e, *, g):\n    '''Doc.'''\n    return a, b, c, d, e, g\n",
        [("too_many_arguments", 2, "f")],
    ),
    (
        "self does not count as an argument",
        DOC + "class C:\n    def m(self, a, b, c, d, e):\n        '''Doc.'''\n",
        [],
    ),
    (
        "deep_nesting",
        DOC
        + code(
            """
            def f(rows):
                '''Doc.'''
                for row in rows:
                    if row:
                        with open(row) as fh:
                            try:
                                return fh
                            except OSError:
                                return None
            """
        ),
        [("deep_nesting", 7, "f")],
    ),
    (
        "elif is not nesting",
        DOC
        + code(
            """
            def f(x):
                '''Doc.'''
                for _ in x:
                    if x == 1:
                        return 1
                    elif x == 2:
                        return 2
                    elif x == 3:
                        if x:
                            return 3
            """
        ),
        [],
    ),
    (
        "missing_docstring",
        DOC + "def f():\n    return 1\n\n\ndef g():\n    def h():\n        '''Doc.'''\n",
        [("missing_docstring", 2, "f"), ("missing_docstring", 6, "g")],
    ),
    ("missing_module_docstring", "x = 1\n", [("missing_module_docstring", 1, None)]),
    ("an empty module needs no docstring", "", []),
    (
        "bare_except",
        DOC + "try:\n    x = 1\nexcept:\n    x = 2\n",
        [("bare_except", 4, None)],
    ),
    (
        "mutable_default",
        DOC + "def f(a, b=[], *, c={}, d=None, e=set()):\n    '''Doc.'''\n",
        [("mutable_default", 2, "f")] * 3,
    ),
    (
        "unused_import",
        DOC + "import os, sys\nfrom json import dumps, loads as parse\nprint(sys, dumps)\n",
        [("unused_import", 2, None), ("unused_import", 3, None)],
    ),
    (
        "unused_variable",
        DOC + "def f():\n    '''Doc.'''\n    x = compute()\n    y: int = 2\n    return 1\n",
        [("undefined_name", 4, "f"), ("unused_variable", 4, "f"), ("unused_variable", 5, "f")],
    ),
    (
        "high_complexity",
        DOC
        + "def f(x):\n    '''Doc.'''\n"
        + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(10)),
        [("high_complexity", 2, "f")],
    ),
]


@pytest.mark.parametrize(
    ("source", "expected"), [c[1:] for c in ISSUE_CASES], ids=[c[0] for c in ISSUE_CASES]
)
def test_detect_issues_finds_each_kind_at_its_line(
    source: str, expected: list[tuple[str, int, str | None]]
) -> None:
    assert issues_of(source) == expected


def test_an_issue_says_what_is_wrong_and_how_bad_it_is() -> None:
    # Given
    source = DOC + code(
        """
        def f(items=[]):
            '''Doc.'''
            try:
                return items
            except:
                pass
        """
    )

    # When
    found = detect_issues({"code": source}, CTX)["issues"]

    # Then
    assert found == [
        {
            "kind": "mutable_default",
            "line": 2,
            "function": "f",
            "message": "parameter 'items' of 'f' defaults to a mutable list, "
            "which every call shares",
            "severity": "high",
        },
        {
            "kind": "bare_except",
            "line": 6,
            "function": "f",
            "message": "bare 'except:' also catches KeyboardInterrupt and SystemExit",
            "severity": "high",
        },
    ]


def test_clean_code_has_no_issues() -> None:
    source = code(
        '''
        """Greetings."""

        import sys


        def greet(name: str) -> str:
            """Say hello."""
            return f"hello {name}" if name else "hello"


        print(greet(sys.argv[0]))
        '''
    )
    assert issues_of(source) == []


# -- unparseable or missing code ----------------------------------------------------------------

CODE_TOOLS = (extract_functions, check_complexity, detect_issues, improve_code)


@pytest.mark.parametrize("tool", CODE_TOOLS, ids=lambda t: t.__name__)
def test_code_that_does_not_parse_raises_a_clear_error(tool: Any) -> None:
    # Given
    broken = "def ok():\n    return 1\n\ndef broken(:\n    pass\n"

    # When / Then
    with pytest.raises(CodeSyntaxError, match=r"^code does not parse: line 4: invalid syntax$"):
        tool({"code": broken}, CTX)


def test_the_engine_sees_a_syntax_error_as_a_failed_tool_with_its_type() -> None:
    with pytest.raises(ToolError) as failed:
        call_tool(toolkit.get("detect_issues"), {"code": "if x\n"}, CTX)
    assert failed.value.error_type == "CodeSyntaxError"
    assert failed.value.message == "code does not parse: line 1: expected ':'"


@pytest.mark.parametrize("state", [{}, {"code": 42}], ids=["missing", "not a string"])
def test_a_state_without_code_is_refused(state: dict[str, Any]) -> None:
    with pytest.raises(CodeReviewError, match=r"state\['code'\] must be a string"):
        extract_functions(state, CTX)


@pytest.mark.parametrize("tool", CODE_TOOLS, ids=lambda t: t.__name__)
def test_code_above_the_size_limit_is_refused_naming_the_limit(tool: Any) -> None:
    # Given valid code one character longer than the tools read
    code = "x = 1\n" + "#" * (MAX_CODE_CHARS - 6) + "\n"
    # When a tool reads it, Then it refuses before any work, saying the size and the limit
    with pytest.raises(CodeReviewError, match=r"is 100,001 characters long; .* at most 100,000"):
        tool({"code": code}, CTX)


def test_code_at_the_size_limit_is_reviewed() -> None:
    # Given valid code exactly as long as the limit
    code = "x = 1\n" + "#" * (MAX_CODE_CHARS - 7) + "\n"
    # When its functions are extracted, Then it is read like any other code
    assert extract_functions({"code": code}, CTX) == {"functions": []}


# -- suggest_improvements -----------------------------------------------------------------------


def test_each_issue_gets_a_specific_suggestion() -> None:
    # Given
    source = code(
        """
        import os


        def f(items=[]):
            try:
                return items
            except:
                pass
        """
    )
    state: dict[str, Any] = {"code": source}
    state.update(check_complexity(state, CTX))
    state.update(detect_issues(state, CTX))

    # When
    suggestions = suggest_improvements(state, CTX)["suggestions"]

    # Then
    by_kind = {s["kind"]: s for s in suggestions}
    assert [s["kind"] for s in suggestions] == [i["kind"] for i in state["issues"]]
    assert by_kind["unused_import"]["suggestion"] == "Delete the unused import of 'os' on line 1."
    assert "'if items is None: items = []'" in by_kind["mutable_default"]["suggestion"]
    assert "'f' (line 7)" in by_kind["bare_except"]["suggestion"]
    assert by_kind["missing_docstring"] == {
        "kind": "missing_docstring",
        "line": 4,
        "function": "f",
        "suggestion": "Add a docstring to 'f' (line 4) that says what it returns and what "
        "each argument means.",
    }


def test_high_complexity_suggestion_quotes_the_measured_complexity() -> None:
    issue = {"kind": "high_complexity", "line": 3, "function": "C.m", "message": "x"}
    out = suggest_improvements({"issues": [issue], "complexity": {"C.m": 17}}, CTX)
    assert out["suggestions"][0]["suggestion"].startswith(
        "Bring the cyclomatic complexity of 'C.m' from 17 down to 10 or less"
    )


# -- evaluate_quality ---------------------------------------------------------------------------


def test_clean_code_scores_ten_and_the_iteration_is_counted() -> None:
    # When
    first = evaluate_quality({"issues": [], "complexity": {"f": 1}, "functions": [{}]}, CTX)
    second = evaluate_quality({"issues": [], "functions": [], **first}, CTX)

    # Then
    assert first == {
        "quality_score": 10.0,
        "iteration": 1,
        "history": [{"iteration": 1, "quality_score": 10.0, "issue_count": 0}],
    }
    assert second["iteration"] == 2
    assert len(second["history"]) == 2


def test_the_score_weighs_severity_per_function() -> None:
    # Given: 10 * exp(-penalty / 4), penalty = weights / functions + 0.5 * (avg cc - 5 if > 5)
    def score(severities: list[str], functions: int, cc: int = 1) -> float:
        state = {
            "issues": [{"severity": s} for s in severities],
            "complexity": {"f": cc},
            "functions": [{}] * functions,
        }
        return float(evaluate_quality(state, CTX)["quality_score"])

    # Then
    assert score(["low", "low"], functions=1) == 7.8  # 10 * exp(-1/4)
    assert score(["high", "high"], functions=1) == 2.2  # 10 * exp(-6/4)
    assert score(["high", "high"], functions=6) == 7.8  # the same issues in more code
    assert score(["medium"], functions=2) == 8.3  # 10 * exp(-0.75/4)
    assert score([], functions=1, cc=9) == 6.1  # 10 * exp(-2/4)
    assert score(["high"] * 40, functions=1) == 0.0


def test_typical_decent_code_scores_at_least_seven() -> None:
    # Given: a few functions, one undocumented, one a bit long, one unused import
    source = code(
        '''
        """Orders."""

        import json
        import os


        def load(path):
            """Load orders."""
            with open(path) as fh:
                return json.load(fh)


        def total(orders):
            return sum(o["price"] * o["qty"] for o in orders if o.get("paid"))


        def report(orders):
            """Print a report."""
            for order in orders:
                if order.get("paid"):
                    print(order["id"], order["price"])
            print("total", total(orders))
        '''
    )
    state: dict[str, Any] = {"code": source}
    for name in LOOP:
        state.update(toolkit.get(name).fn(state, CTX) or {})

    # Then
    assert len(state["issues"]) == 2
    assert state["quality_score"] >= 7


# -- the review loop ----------------------------------------------------------------------------


def test_the_review_loop_lifts_the_sample_above_seven_before_iteration_five() -> None:
    # Given
    original = SAMPLE.read_text()
    state: dict[str, Any] = {"code": original}
    applied: list[dict[str, Any]] = []

    # When: extract -> complexity -> issues -> suggest -> evaluate -> (improve -> extract ...)
    while True:
        for name in LOOP:
            state.update(toolkit.get(name).fn(state, CTX) or {})
        if state["quality_score"] >= 7 or state["iteration"] >= 5:
            break
        state.update(improve_code(state, CTX))
        applied += state["fixes_applied"]

    # Then
    scores = [h["quality_score"] for h in state["history"]]
    assert scores[0] < 7 <= scores[-1]
    assert state["iteration"] < 5
    assert scores == sorted(scores)
    assert {f["kind"] for f in applied} >= {
        "bare_except",
        "mutable_default",
        "unused_import",
        "unused_variable",
        "missing_docstring",
        "missing_module_docstring",
        "deep_nesting",
    }
    compile(state["code"], "sample", "exec")
    assert all(c in state["code"] for c in comments(original))
    assert [i["kind"] for i in state["issues"]] == ["too_many_arguments"]


@pytest.mark.parametrize("name", ["code_review.json", "code_review_compat.json"])
def test_the_example_graphs_name_only_tools_of_this_toolkit(name: str) -> None:
    graph = json.loads((ROOT / "examples" / name).read_text())
    tools = {node["tool"] for node in graph["nodes"].values()}
    assert tools <= set(toolkit.names())
    assert len(tools) == 6
