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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar, overload

from engine.errors import HopgraphError, UnknownToolError

State: TypeAlias = dict[str, Any]
Updates: TypeAlias = dict[str, Any]
ToolResult: TypeAlias = Updates | None
ToolFn: TypeAlias = Callable[[Mapping[str, Any], "ToolContext"], ToolResult | Awaitable[ToolResult]]
F = TypeVar("F", bound=Callable[..., Any])

MAX_ERROR_CHARS = 2_000
"""Longest error text a step records: a run's step log is stored item by item (a DynamoDB
item holds 400 KB), and a tool raising with a 500 KB message must fail its step, not the
write of it."""


_NO_SETTINGS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {"reads": list(self.reads), "writes": list(self.writes)},
            "async": self.is_async,
        }


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
    ) -> F | Callable[[F], F]:
        """Register a tool; usable as ``@tk.tool`` or ``@tk.tool(name=..., reads=...)``."""

        def register(f: F) -> F:
            for tool_name in (name or f.__name__, *aliases):
                self.add(
                    Tool(
                        name=tool_name,
                        fn=f,
                        description=_first_paragraph(f.__doc__),
                        reads=tuple(reads),
                        writes=tuple(writes),
                        is_async=inspect.iscoroutinefunction(f),
                    )
                )
            with contextlib.suppress(AttributeError, TypeError):  # a builtin takes no attributes
                f.__hopgraph_tool__ = name or f.__name__  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    def add(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def include(self, other: Toolkit) -> None:
        """Add every tool of ``other``; a later toolkit wins on a name clash."""
        self._tools.update(other._tools)

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
    """Import each module and merge its ``toolkit`` into one registry."""
    registry = into if into is not None else Toolkit("registry")
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise HopgraphError(f"cannot load toolkit {module_name!r}: {exc}") from exc
        toolkit = getattr(module, "toolkit", None)
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


def call_tool(tool: Tool, state: Mapping[str, Any], ctx: ToolContext) -> Updates:
    """Run a tool and return its updates; every failure becomes a :class:`ToolError`."""
    try:
        result = tool.fn(state, ctx)
        if tool.is_async or inspect.isawaitable(result):
            result = _run_coroutine(result)  # type: ignore[arg-type]
    except Exception as exc:  # a tool's failure is data for the step log, not a crash
        raise ToolError(tool.name, type(exc).__name__, _describe(exc)) from exc
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise ToolError(
            tool.name, "TypeError", f"returned {type(result).__name__}, expected a dict or None"
        )
    return result
