"""Tools: the Python callables that graph nodes run, and the registry that names them.

A tool takes a read-only view of the run's state and a :class:`ToolContext`, and returns a
dict of updates to merge into the state, or ``None``. Tools may be ``async``. Delivery is
at least once, so a tool with side effects should key them on ``ctx.idempotency_key``.

Toolkits are plain modules that expose a module-level ``toolkit`` (a :class:`Toolkit`);
which toolkits a deployment loads is configuration: :func:`load_toolkits` takes module names.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar, overload

from engine.deadlines import call_within, with_deadline
from engine.errors import HopgraphError, UnknownToolError
from engine.records import record

State: TypeAlias = dict[str, Any]
Updates: TypeAlias = dict[str, Any]
ToolResult: TypeAlias = "Updates | Command | Interrupt | None"
"""What a tool returns: updates, a :class:`Command` (updates and where to go), an
:class:`Interrupt` (a question for a person, with its other updates), or nothing."""
ToolFn: TypeAlias = Callable[
    [Mapping[str, Any], "ToolContext"], "ToolResult | Awaitable[ToolResult]"
]
F = TypeVar("F", bound=Callable[..., Any])
RF = TypeVar("RF", bound=Callable[..., Any])
RD = TypeVar("RD", bound=Callable[..., Any])

MAX_ERROR_CHARS = 2_000
"""Longest error text a step records: a run's step log is stored item by item (a DynamoDB
item holds 400 KB), and a tool raising with a 500 KB message must fail its step, not the
write of it."""


_NO_SETTINGS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Send:
    """A task for the next superstep with its own input (LangGraph's ``Send``): ``node``
    runs on ``payload`` alone, not on the run's state; its updates merge into the state.

    A router returns these, or a tool in a :class:`Command`'s ``goto``. The payload is a
    JSON object: it is recorded with the superstep that sends it, so that a durable worker
    rebuilds the task from the run's records rather than from the message that carries it."""

    node: str
    payload: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "payload": dict(self.payload)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Send:
        return cls(str(doc["node"]), dict(doc["payload"]))


Goto: TypeAlias = str | Send | Sequence[str | Send]
"""Where a router or a :class:`Command` sends the run: a node (or END), a :class:`Send`, or
a list of them."""


@dataclass(frozen=True, slots=True)
class Command:
    """What a tool returns to update the state *and* say where to go (LangGraph's
    ``Command(update=..., goto=...)``). The ``goto`` targets run next, beside the node's own
    edges; its node declares them (``"goto": [...]`` in the graph)."""

    update: Mapping[str, Any] | None = None
    goto: Goto = ()


@dataclass(frozen=True, slots=True)
class Interrupt:
    """What a tool returns to ask a person (``return ctx.interrupt(...)``): the run pauses
    with its ``update`` held; the answer, written under ``key``, is committed with it, and
    the run goes on by the node's edges. The tool does not run again (engine/pauses.py)."""

    prompt: str
    key: str | None = None
    schema: Mapping[str, Any] | None = None
    timeout_s: float | None = None
    update: Mapping[str, Any] | None = None


RouterFn: TypeAlias = Callable[[Mapping[str, Any]], Goto]
"""A registered router: the state (with its node's updates) in, where to go out."""


@dataclass(frozen=True, slots=True)
class CustomReducer:
    """A reducer a toolkit registers (``@toolkit.reducer``), named in a graph's ``state``:
    ``(current, update) -> merged``, with ``current`` the key's empty value, or ``None`` when
    it has none and the key is not set yet."""

    name: str
    fn: Callable[[Any, Any], Any]
    empty: Callable[[], Any] | None = None
    """Makes the value the key holds before any update (LangGraph's channel starts from its
    type: ``list`` gives ``[]``); ``None``: the key is absent until first written."""


@record
class ToolContext:
    """What a tool knows about the step it runs in."""

    run_id: str
    node: str
    step: int
    attempt: int = 1
    settings: Mapping[str, Any] = field(default_factory=lambda: _NO_SETTINGS)
    """The node's ``settings`` from the graph definition (read-only)."""
    index: int | None = None
    """A map task: the index of its item."""

    @property
    def task(self) -> str:
        """The task's name in its superstep: ``grade[3]`` for a map item, else the node."""
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def interrupt(
        self, prompt: str, *, key: str | None = None, schema: Mapping[str, Any] | None = None,
        timeout_s: float | None = None, update: Mapping[str, Any] | None = None,
    ) -> Interrupt:  # fmt: skip
        """Ask a person: ``return ctx.interrupt("Approve?", key="approved", schema=...)``.
        The run pauses until ``POST /runs/{id}/resume`` answers (``timeout_s``: the run fails
        if nobody answers in time); ``update`` is committed with the answer."""
        return Interrupt(prompt, key, schema, timeout_s, update)

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries of the same task, and different for every task of a
        run (each map item, each branch of a fan-out): use it to key side effects."""
        return f"{self.run_id}:{self.step}:{self.task}"


@dataclass(frozen=True, slots=True)
class Tool:
    """A registered tool and what ``GET /tools`` says about it."""

    name: str
    fn: ToolFn
    description: str = ""
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    is_async: bool = False
    input_schema: Mapping[str, Any] | None = None
    """The JSON schema of what a model passes when it calls this tool (``input=``, or the
    type hint of the tool's first parameter): :mod:`engine.schemas`. ``None``: a node tool
    only, never offered to a model."""
    input_model: Any = None
    """The pydantic model the input is validated with, when the schema came from one."""

    def describe(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "description": self.description,
            "parameters": {"reads": list(self.reads), "writes": list(self.writes)},
            "async": self.is_async,
        }
        if self.input_schema is not None:
            doc["input_schema"] = dict(self.input_schema)
        return doc


class ToolError(HopgraphError):
    """A tool raised, or returned something that is not a dict of updates.

    Its text is whatever the tool's exception said: a step records it through
    :func:`bounded_text`."""

    def __init__(self, tool: str, error_type: str, message: str) -> None:
        self.tool = tool
        self.error_type = error_type
        self.message = message
        super().__init__(f"tool {tool!r} failed: {error_type}: {message}")


def bounded_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _describe(exc: BaseException) -> str:
    """An exception's message, which may fail to render (``str`` of a huge int raises)."""
    try:
        return str(exc)
    except Exception as failure:  # a custom __str__ may raise anything
        return f"(its message could not be rendered: {type(failure).__name__})"


def _first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n\n", 1)[0].strip() if doc else ""


@dataclass
class Toolkit:
    """A named set of tools. Also used as the registry a deployment runs with."""

    name: str = "tools"
    _tools: dict[str, Tool] = field(default_factory=dict)
    _routers: dict[str, RouterFn] = field(default_factory=dict)
    _reducers: dict[str, CustomReducer] = field(default_factory=dict)

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        aliases: Iterable[str] = (),
        reads: Iterable[str] = (),
        writes: Iterable[str] = (),
        input: Any = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        aliases: Iterable[str] = (),
        reads: Iterable[str] = (),
        writes: Iterable[str] = (),
        input: Any = None,
    ) -> F | Callable[[F], F]:
        """Register a tool; usable as ``@tk.tool`` or ``@tk.tool(name=..., reads=...)``.

        ``input``: what a model passes when it calls the tool (a pydantic model, a TypedDict,
        a dataclass or a JSON schema); without it, the type hint of the tool's first
        parameter, when that is one of these (:func:`engine.schemas.input_schema`)."""

        def register(f: F) -> F:
            from engine.schemas import input_schema

            schema, model = input_schema(f, input)
            for tool_name in (name or f.__name__, *aliases):
                self.add(
                    Tool(
                        name=tool_name,
                        fn=f,
                        description=_first_paragraph(f.__doc__),
                        reads=tuple(reads),
                        writes=tuple(writes),
                        is_async=inspect.iscoroutinefunction(f),
                        input_schema=schema,
                        input_model=model,
                    )
                )
            with contextlib.suppress(AttributeError, TypeError):  # a builtin takes no attributes
                f.__hopgraph_tool__ = name or f.__name__  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    def add(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def router(self, fn: RF | None = None, /, *, name: str | None = None) -> Any:
        """Register a router (``@tk.router`` or ``@tk.router(name=...)``): a function of the
        state that returns a node, a list of nodes, or :class:`Send` items (LangGraph's path
        function in ``add_conditional_edges``). A graph names it in a branch:
        ``"branches": {"plan": {"router": "name", "to": ["a", "b"]}}``."""

        def register(f: RF) -> RF:
            self._routers[name or f.__name__] = f
            return f

        return register(fn) if fn is not None else register

    def reducer(
        self,
        fn: RD | None = None,
        /,
        *,
        name: str | None = None,
        empty: Callable[[], Any] | None = None,
    ) -> Any:
        """Register a reducer (``@tk.reducer`` or ``@tk.reducer(name=..., empty=list)``):
        ``(current, update) -> merged``, never mutating its arguments. A graph names it in
        its ``state``: ``{"key": {"reducer": "name"}}``."""

        def register(f: RD) -> RD:
            reducer_name = name or f.__name__
            self._reducers[reducer_name] = CustomReducer(reducer_name, f, empty)
            return f

        return register(fn) if fn is not None else register

    def get_router(self, name: str) -> RouterFn:
        try:
            return self._routers[name]
        except KeyError:
            raise UnknownToolError(name) from None

    def router_names(self) -> list[str]:
        return sorted(self._routers)

    def reducers(self) -> Mapping[str, CustomReducer]:
        """The reducers this toolkit registers, by name."""
        return MappingProxyType(self._reducers)

    def include(self, other: Toolkit) -> None:
        """Add every tool, router and reducer of ``other``; a later toolkit wins on a name
        clash."""
        self._tools.update(other._tools)
        self._routers.update(other._routers)
        self._reducers.update(other._reducers)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def describe(self) -> list[dict[str, Any]]:
        return [self._tools[n].describe() for n in self.names()]


def load_toolkits(module_names: Iterable[str], into: Toolkit | None = None) -> Toolkit:
    """Import each module and merge its ``toolkit`` into one registry. A module with a
    ``make_toolkit(registry)`` function instead gives the toolkit that function returns (the
    model nodes' tools call the tools of the registry they are loaded into)."""
    registry = into if into is not None else Toolkit("registry")
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise HopgraphError(f"cannot load toolkit {module_name!r}: {exc}") from exc
        make = getattr(module, "make_toolkit", None)  # a toolkit bound to the registry
        toolkit = make(registry) if callable(make) else getattr(module, "toolkit", None)
        if not isinstance(toolkit, Toolkit):
            raise HopgraphError(f"module {module_name!r} has no module-level `toolkit`")
        registry.include(toolkit)
    return registry


class _Loops(threading.local):
    loop: asyncio.AbstractEventLoop | None = None


_loops = _Loops()


def _run_coroutine(awaitable: Awaitable[ToolResult]) -> ToolResult:
    # One loop per thread, reused: creating a loop per async tool call costs ~100 us, and a
    # loop shared between threads (FastAPI's pool, a local poller) fails with "This event
    # loop is already running" when two threads run async tools at once.
    loop = _loops.loop
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(awaitable)


def _call_once(tool: Tool, state: Mapping[str, Any], ctx: ToolContext) -> Any:
    result = tool.fn(state, ctx)
    if tool.is_async or (type(result) is not dict and inspect.isawaitable(result)):
        result = _run_coroutine(result)  # type: ignore[arg-type]
    return result


def call_tool(tool: Tool, state: Mapping[str, Any], ctx: ToolContext) -> Updates:
    """Run a tool and return its updates; every failure becomes a :class:`ToolError`.

    A :class:`Command` without ``goto`` counts as its update; one with a ``goto`` needs
    :func:`call_tool_command` (a node that declares ``goto`` runs through it)."""
    updates, goto = call_tool_command(tool, state, ctx)
    if isinstance(goto, Interrupt):
        raise ToolError(tool.name, "TypeError", "returned an interrupt: only a graph node's "
                        "tool can pause its run, not a tool a model calls")  # fmt: skip
    if goto is not None:
        raise ToolError(
            tool.name,
            "TypeError",
            "returned a Command with a goto, and its node "
            'declares none: add "goto": [<the nodes it may go to>] to the node',
        )
    return updates


def call_tool_command(
    tool: Tool, state: Mapping[str, Any], ctx: ToolContext, timeout_s: float | None = None
) -> tuple[Updates, Goto | Interrupt | None]:
    """Run a tool and return its updates and, when it returned a :class:`Command` with a
    ``goto``, where it goes (or the :class:`Interrupt` it asks); every failure becomes a
    :class:`ToolError`. ``timeout_s``: its deadline (:mod:`engine.deadlines`), past which it
    fails with ``TimeoutError``."""
    try:
        if timeout_s is None:
            result = _call_once(tool, state, ctx)
        elif tool.is_async:
            result = _run_coroutine(with_deadline(tool.fn(state, ctx), timeout_s))  # type: ignore[arg-type]
        else:
            result = call_within(lambda: _call_once(tool, state, ctx), timeout_s, tool.name)
    except Exception as exc:  # a tool's failure is data for the step log, not a crash
        raise ToolError(tool.name, type(exc).__name__, _describe(exc)) from exc
    if type(result) is dict:  # the common answer, checked first
        return result, None
    if result is None:
        return {}, None
    if isinstance(result, Command):
        update = result.update if result.update is not None else {}
        if not isinstance(update, Mapping):
            raise ToolError(tool.name, "TypeError", "returned a Command whose update is "
                            f"{type(update).__name__}, expected a dict or None")  # fmt: skip
        empty = result.goto == () or result.goto == []
        return dict(update), None if empty else result.goto
    if isinstance(result, Interrupt):
        update = result.update if result.update is not None else {}
        if not isinstance(update, Mapping):
            raise ToolError(tool.name, "TypeError", "returned an interrupt whose update is "
                            f"{type(update).__name__}, expected a dict or None")  # fmt: skip
        return dict(update), result
    if not isinstance(result, dict):
        raise ToolError(
            tool.name, "TypeError", f"returned {type(result).__name__}, expected a dict or None"
        )
    return result, None
