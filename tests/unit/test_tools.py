"""The tool registry and calling tools: decorator forms, toolkits by module, failures as data."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from engine.errors import HopgraphError, UnknownToolError
from engine.tools import ToolContext, ToolError, Toolkit, bounded_text, call_tool, load_toolkits

CTX = ToolContext("r_1", "node", 3)


def test_bare_decorator_registers_under_the_function_name() -> None:
    tk = Toolkit("t")

    @tk.tool
    def fetch(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Fetch the code.

        More detail that is not part of the description."""
        return {"code": "x"}

    assert tk.names() == ["fetch"]
    assert tk.get("fetch").fn is fetch  # the decorator gives the function back
    assert tk.get("fetch").description == "Fetch the code."
    assert "fetch" in tk and "other" not in tk


def test_decorator_with_arguments_names_aliases_reads_and_writes() -> None:
    tk = Toolkit("t")

    @tk.tool(
        name="complexity", aliases=["calculate_complexity", "cc"], reads=["code"], writes=["c"]
    )
    def measure(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"c": 1}

    assert tk.names() == ["calculate_complexity", "cc", "complexity"]
    for name in tk.names():
        tool = tk.get(name)
        assert tool.fn is measure
        assert tool.reads == ("code",) and tool.writes == ("c",)
    assert tk.get("cc").name == "cc"


def test_calling_tool_directly_registers_a_function() -> None:
    tk = Toolkit("t")

    def plain(state: Mapping[str, Any], ctx: ToolContext) -> None:
        return None

    assert tk.tool(plain) is plain
    assert tk.names() == ["plain"]


def test_describe_lists_every_tool_sorted_with_its_parameters() -> None:
    tk = Toolkit("t")

    @tk.tool(reads=["a"], writes=["b"])
    async def second(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Second tool."""
        return {}

    @tk.tool
    def first(state: Mapping[str, Any], ctx: ToolContext) -> None:
        pass

    assert tk.describe() == [
        {
            "name": "first",
            "description": "",
            "parameters": {"reads": [], "writes": []},
            "async": False,
        },
        {
            "name": "second",
            "description": "Second tool.",
            "parameters": {"reads": ["a"], "writes": ["b"]},
            "async": True,
        },
    ]


def test_getting_an_unknown_tool_raises_unknown_tool_error() -> None:
    with pytest.raises(UnknownToolError) as caught:
        Toolkit("t").get("nope")
    assert caught.value.kind == "tool" and caught.value.ident == "nope"


def test_include_merges_and_the_later_toolkit_wins() -> None:
    a, b = Toolkit("a"), Toolkit("b")
    a.tool(name="shared")(lambda s, c: {"from": "a"})
    a.tool(name="only_a")(lambda s, c: None)
    b.tool(name="shared")(lambda s, c: {"from": "b"})
    a.include(b)
    assert a.names() == ["only_a", "shared"]
    assert call_tool(a.get("shared"), {}, CTX) == {"from": "b"}


# -- toolkits by module name ---------------------------------------------------------------------
@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway toolkit modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("hg_test_")]:
        del sys.modules[name]


def write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_load_toolkits_imports_each_module_and_merges_its_toolkit(modules: Path) -> None:
    # Given two modules, each with a module-level toolkit
    for name, tool in (("hg_test_one", "alpha"), ("hg_test_two", "beta")):
        write_module(
            modules,
            name,
            f"""
            from engine.tools import Toolkit
            toolkit = Toolkit({name!r})

            @toolkit.tool
            def {tool}(state, ctx):
                return {{"{tool}": True}}
            """,
        )
    # When loaded by name
    registry = load_toolkits(["hg_test_one", "hg_test_two"])
    # Then the registry holds both tools, and they run
    assert registry.names() == ["alpha", "beta"]
    assert call_tool(registry.get("beta"), {}, CTX) == {"beta": True}


def test_load_toolkits_into_an_existing_registry(modules: Path) -> None:
    write_module(
        modules,
        "hg_test_three",
        """
        from engine.tools import Toolkit
        toolkit = Toolkit("three")
        toolkit.tool(name="gamma")(lambda state, ctx: None)
        """,
    )
    registry = Toolkit("mine")
    registry.tool(name="own")(lambda state, ctx: None)
    assert load_toolkits(["hg_test_three"], into=registry) is registry
    assert registry.names() == ["gamma", "own"]


def test_a_module_without_a_toolkit_is_a_clear_error(modules: Path) -> None:
    write_module(modules, "hg_test_empty", "toolkit = 'not a Toolkit'\n")
    with pytest.raises(HopgraphError, match="module 'hg_test_empty' has no module-level `toolkit`"):
        load_toolkits(["hg_test_empty"])
    with pytest.raises(HopgraphError, match="module 'json' has no module-level `toolkit`"):
        load_toolkits(["json"])


def test_the_code_review_toolkit_loads_by_name() -> None:
    registry = load_toolkits(["engine.toolkits.code_review"])
    assert {"extract_functions", "evaluate_quality", "improve_code"} <= set(registry.names())


# -- calling tools -------------------------------------------------------------------------------
def test_a_sync_tool_gets_the_state_and_its_context() -> None:
    seen: dict[str, Any] = {}
    tk = Toolkit()

    @tk.tool
    def look(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        seen.update(state=dict(state), ctx=ctx)
        return {"n": state["n"] + 1}

    assert call_tool(tk.get("look"), {"n": 1}, CTX) == {"n": 2}
    assert seen == {"state": {"n": 1}, "ctx": CTX}


def test_an_async_tool_is_awaited() -> None:
    tk = Toolkit()

    @tk.tool
    async def wait(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"waited": ctx.step}

    assert tk.get("wait").is_async
    assert call_tool(tk.get("wait"), {}, CTX) == {"waited": 3}
    assert call_tool(tk.get("wait"), {}, CTX) == {"waited": 3}  # the loop is reused


def test_a_sync_tool_returning_an_awaitable_is_awaited() -> None:
    tk = Toolkit()

    async def later() -> dict[str, Any]:
        return {"late": True}

    tk.tool(name="wrapper")(lambda state, ctx: later())
    assert not tk.get("wrapper").is_async
    assert call_tool(tk.get("wrapper"), {}, CTX) == {"late": True}


def test_async_tools_run_in_several_threads_at_once() -> None:
    # Given an async tool that yields to its loop, called from four threads together
    tk = Toolkit()
    barrier = threading.Barrier(4)

    @tk.tool
    async def slow(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {"step": ctx.step}

    results: list[Any] = []

    def call(step: int) -> None:
        barrier.wait()
        try:
            results.append(call_tool(tk.get("slow"), {}, ToolContext("r", "n", step)))
        except ToolError as exc:  # recorded, so the assertion shows it
            results.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every call succeeds (each thread has its own event loop)
    assert sorted(results, key=str) == [{"step": i} for i in range(4)]


def test_none_means_no_updates() -> None:
    tk = Toolkit()
    tk.tool(name="nothing")(lambda state, ctx: None)
    assert call_tool(tk.get("nothing"), {"a": 1}, CTX) == {}


def test_a_raising_tool_becomes_a_tool_error_with_type_and_message() -> None:
    tk = Toolkit()

    @tk.tool
    def broken(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        raise ValueError("code does not parse: line 3")

    with pytest.raises(ToolError) as caught:
        call_tool(tk.get("broken"), {}, CTX)
    error = caught.value
    assert (error.tool, error.error_type, error.message) == (
        "broken",
        "ValueError",
        "code does not parse: line 3",
    )
    assert str(error) == "tool 'broken' failed: ValueError: code does not parse: line 3"
    assert isinstance(error.__cause__, ValueError)


def test_a_tool_error_whose_message_cannot_be_rendered_is_still_a_tool_error() -> None:
    # Given a tool raising with a message that str() refuses (an int above 4,300 digits)
    tk = Toolkit()

    @tk.tool
    def huge(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        raise ValueError(10**5000)

    # When it is called, Then the failure is a ToolError that says so, not a crash
    with pytest.raises(ToolError) as caught:
        call_tool(tk.get("huge"), {}, CTX)
    assert caught.value.error_type == "ValueError"
    assert caught.value.message == "(its message could not be rendered: ValueError)"


def test_bounded_text_keeps_short_text_and_cuts_long_text_saying_how_much() -> None:
    assert bounded_text("short", 10) == "short"
    assert bounded_text("x" * 15, 10) == "xxxxxxxxxx... (5 more characters)"


def test_a_raising_async_tool_becomes_a_tool_error() -> None:
    tk = Toolkit()

    @tk.tool
    async def broken(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        raise KeyError("missing")

    with pytest.raises(ToolError) as caught:
        call_tool(tk.get("broken"), {}, CTX)
    assert caught.value.error_type == "KeyError"


def test_a_tool_that_writes_to_its_state_fails_and_leaves_the_state_alone() -> None:
    tk = Toolkit()

    @tk.tool
    def sneaky(state: Any, ctx: ToolContext) -> None:
        state["x"] = 1

    state: dict[str, Any] = {}
    with pytest.raises(ToolError) as caught:
        call_tool(tk.get("sneaky"), MappingProxyType(state), CTX)
    assert caught.value.error_type == "TypeError"
    assert state == {}


@pytest.mark.parametrize("result", [[("a", 1)], "text", 3, MappingProxyType({"a": 1})])
def test_a_tool_returning_a_non_dict_is_a_tool_error(result: Any) -> None:
    tk = Toolkit()
    tk.tool(name="odd")(lambda state, ctx: result)
    with pytest.raises(ToolError) as caught:
        call_tool(tk.get("odd"), {}, CTX)
    assert caught.value.error_type == "TypeError"
    assert f"returned {type(result).__name__}, expected a dict or None" in caught.value.message


@pytest.mark.parametrize(
    "ms", [1e9, 10_001, -1, float("nan"), float("inf"), "100", True, None, [5]], ids=repr
)
def test_wait_refuses_what_is_not_a_finite_number_of_milliseconds_up_to_the_cap(ms: Any) -> None:
    # Given the built-in wait tool with an unacceptable duration
    wait = load_toolkits(["engine.toolkits.basics"]).get("wait")
    ctx = ToolContext("r_1", "node", 3, settings=MappingProxyType({"ms": ms}))
    # When it runs, Then it fails at once, saying what it accepts
    with pytest.raises(
        ToolError, match=r"settings\.ms must be a number of milliseconds from 0 to 10,000"
    ):
        call_tool(wait, {}, ctx)


@pytest.mark.parametrize("ms", [0, 1, 2.5])
def test_wait_sleeps_an_acceptable_duration(ms: float) -> None:
    wait = load_toolkits(["engine.toolkits.basics"]).get("wait")
    ctx = ToolContext("r_1", "node", 3, settings=MappingProxyType({"ms": ms}))
    assert call_tool(wait, {}, ctx) == {}
    assert "at most 10,000" in wait.description


def test_idempotency_key_is_stable_across_attempts_and_distinct_per_task() -> None:
    first = ToolContext("r_1", "review", 4, attempt=1)
    retry = ToolContext("r_1", "review", 4, attempt=3)
    assert first.idempotency_key == retry.idempotency_key == "r_1:4:review"
    assert ToolContext("r_1", "review", 5).idempotency_key != first.idempotency_key
    assert ToolContext("r_2", "review", 4).idempotency_key != first.idempotency_key
    # Every task of one superstep has its own: each map item, each branch of a fan-out
    items = {ToolContext("r_1", "grade", 4, index=i).idempotency_key for i in range(3)}
    assert items == {"r_1:4:grade[0]", "r_1:4:grade[1]", "r_1:4:grade[2]"}
    assert ToolContext("r_1", "other", 4).idempotency_key != first.idempotency_key
