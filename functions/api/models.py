"""Request and response schemas of the HTTP API, with the examples OpenAPI shows.

Responses are built from engine records by the ``from_*`` constructors, which are the only
place records turn into JSON: timestamps become ISO 8601 UTC strings here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    model_serializer,
)

from engine.blobs import summary
from engine.events import iso
from engine.ports import (
    AttemptRecord,
    GraphRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    TaskRecord,
)
from engine.validation import MAX_STEPS_CEILING
from functions.api.examples import (
    CANONICAL,
    EXAMPLE_GRAPH_ID,
    EXAMPLE_LOG_ENTRY,
    EXAMPLE_RUN_ID,
    EXAMPLE_STATE,
    EXAMPLE_TIME,
    SAMPLE_CODE,
)

Id = Annotated[str, Field(min_length=1, max_length=128)]
Timestamp = Annotated[str, Field(description="ISO 8601, UTC", examples=[EXAMPLE_TIME])]
State = dict[str, Any]
StepLimit = Annotated[StrictInt, Field(ge=1, le=MAX_STEPS_CEILING)]
"""A run's ``max_steps``: a JSON integer, as in graph definitions and queued requests
(``true``, ``"3"`` and ``3.0`` are refused, not converted)."""


def _examples(*values: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)})


# -- graphs ---------------------------------------------------------------------------------
class GraphResource(BaseModel):
    """A stored graph, in canonical form whatever dialect it was sent in."""

    model_config = _examples(
        {
            "graph_id": EXAMPLE_GRAPH_ID,
            "name": "code_review",
            "created_at": EXAMPLE_TIME,
            "graph": CANONICAL,
        }
    )

    graph_id: str
    name: str
    created_at: Timestamp
    graph: dict[str, Any] = Field(description="The canonical definition.")

    @classmethod
    def from_record(cls, record: GraphRecord) -> GraphResource:
        return cls(
            graph_id=record.graph_id,
            name=record.name,
            created_at=iso(record.created_at),
            graph=record.definition,
        )


class GraphSummary(BaseModel):
    graph_id: str
    name: str
    created_at: Timestamp

    @classmethod
    def from_record(cls, record: GraphRecord) -> GraphSummary:
        return cls(graph_id=record.graph_id, name=record.name, created_at=iso(record.created_at))


class GraphPage(BaseModel):
    """Graphs, newest first."""

    model_config = _examples(
        {
            "items": [
                {"graph_id": EXAMPLE_GRAPH_ID, "name": "code_review", "created_at": EXAMPLE_TIME}
            ],
            "next_cursor": None,
        }
    )

    items: list[GraphSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: no more."
    )


class MermaidDocument(BaseModel):
    model_config = _examples(
        {
            "graph_id": EXAMPLE_GRAPH_ID,
            "mermaid": "flowchart TD\n    __start__([start])\n",
            "node_ids": {"extract": "extract", "END": "__end__"},
        }
    )

    graph_id: str
    mermaid: str = Field(description="A Mermaid `flowchart TD`.")
    node_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Each node's id in `mermaid` (`END`'s too): the node's name when Mermaid "
        "takes it as an id, else a generated one. Use it to style drawn nodes "
        "(`class ID name`).",
    )


# -- runs -----------------------------------------------------------------------------------
class RunStartRequest(BaseModel):
    """Start a run of a graph."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"graph_id": EXAMPLE_GRAPH_ID, "input": {"code": "x = 1\n"}}]
        },
    )

    graph_id: Id
    input: State | None = Field(
        default=None, description="The run's initial state (a JSON object); default {}."
    )
    idempotency_key: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Starting again with the same graph, key, input and `max_steps` returns "
        "the same run (200) instead of creating one (202); the same key with a different "
        "input or `max_steps` is refused (409 `idempotency_conflict`).",
    )
    max_steps: StepLimit | None = Field(
        default=None, description="Step limit; default: the graph's, else the deployment's."
    )
    interrupt_before: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list,
        max_length=256,
        description="Nodes this run pauses before, beside its graph's own breakpoints "
        "(LangGraph's `interrupt_before`); resume it with no value to go on.",
    )
    interrupt_after: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list,
        max_length=256,
        description="Nodes this run pauses after, before their updates are committed.",
    )


class RunAccepted(BaseModel):
    model_config = _examples(
        {
            "run_id": EXAMPLE_RUN_ID,
            "graph_id": EXAMPLE_GRAPH_ID,
            "status": "running",
            "created": True,
        }
    )

    run_id: str
    graph_id: str
    status: RunStatus
    created: bool = Field(description="False: an earlier start with this idempotency key.")

    @classmethod
    def from_record(cls, run: RunRecord, created: bool) -> RunAccepted:
        return cls(run_id=run.run_id, graph_id=run.graph_id, status=run.status, created=created)


class RunSummary(BaseModel):
    run_id: str
    graph_id: str
    status: RunStatus
    error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    owner: str | None = Field(
        default=None, description="Who started it (the token's `sub`); admins see every owner."
    )

    @classmethod
    def from_record(cls, run: RunRecord) -> RunSummary:
        return cls(
            run_id=run.run_id,
            graph_id=run.graph_id,
            status=run.status,
            error=run.error,
            created_at=iso(run.created_at),
            updated_at=iso(run.updated_at),
            owner=run.owner,
        )


_RUN_EXAMPLE: dict[str, Any] = {
    "run_id": EXAMPLE_RUN_ID,
    "graph_id": EXAMPLE_GRAPH_ID,
    "status": "completed",
    "error": None,
    "created_at": EXAMPLE_TIME,
    "updated_at": EXAMPLE_TIME,
    "owner": "alice",
}


class PendingQuestion(BaseModel):
    """A task of a paused run that waits for an answer (``POST /runs/{id}/resume``)."""

    id: str = Field(description="The question's id: `<superstep>/<kind>/<task>`.")
    task: str = Field(description="The task: its node, or `node[i]` for a map item.")
    node: str
    kind: Literal["interrupt", "before", "after"] = Field(
        description="An interrupt (a node's question, or its tool's `ctx.interrupt`), or a "
        "static breakpoint before or after its node (resume it with no value)."
    )
    prompt: str | None = None
    key: str | None = Field(default=None, description="The state key the answer is written to.")
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="The answer's JSON schema."
    )
    since: Timestamp
    until: Timestamp | None = Field(default=None, description="Its deadline, if any.")
    on_timeout: str | None = Field(
        default=None, description="Where the run goes if nobody answers by `until`."
    )

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def from_question(cls, doc: dict[str, Any]) -> PendingQuestion:
        until = doc.get("until")
        return cls(
            id=doc["id"], task=doc["task"], node=doc["node"], kind=doc["kind"],
            prompt=doc.get("prompt"),
            key=doc.get("key"), schema=doc.get("schema"), since=iso(doc["since"]),
            until=None if until is None else iso(until), on_timeout=doc.get("on_timeout"),
        )  # fmt: skip


class ParentRef(BaseModel):
    """The run this one came from: a subgraph node's task (a child run gives it its result),
    or the superstep a fork started from (no task)."""

    run_id: str
    seq: int = Field(description="The parent's superstep (a fork: whose state it started from).")
    task: str | None = Field(
        default=None,
        description="A child run's: the parent's task, its node or `node[i]` for an item.",
    )

    @model_serializer(mode="wrap")
    def _without_task_of_a_fork(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("task") is None:
            data.pop("task", None)
        return data


class RunResource(RunSummary):
    """A run with the view of its latest committed step."""

    model_config = _examples(
        {
            **_RUN_EXAMPLE,
            "input": {"code": SAMPLE_CODE},
            "state": EXAMPLE_STATE,
            "current_node": None,
            "steps": 5,
            "max_steps": 50,
            "idempotency_key": None,
        }
    )

    input: State
    state: State = Field(description="The state after the latest committed step.")
    current_node: str | None = Field(description="The node the next step runs; null once final.")
    steps: int = Field(description="Committed steps.")
    max_steps: int
    idempotency_key: str | None
    usage: dict[str, Any] | None = Field(
        default=None,
        description="Its model calls totalled (tokens, latency, per model) and their estimated "
        "cost from the configured price table; null when no model ran.",
    )
    parent: ParentRef | None = Field(
        default=None,
        description="A child run (a subgraph node's work): the parent run, superstep and task "
        "whose result it gives (the parent's log names the child as `child_run_id`). A fork: "
        "the run and superstep it was forked from.",
    )

    wakes_at: Timestamp | None = Field(
        default=None,
        description="A running run whose next node waits for a time: when it goes on.",
    )
    pending: list[PendingQuestion] = Field(
        default_factory=list,
        description="A paused run: the questions it waits for, each answered by "
        "`POST /runs/{id}/resume` with its `task`.",
    )

    @classmethod
    def from_record(
        cls, run: RunRecord, wakes_at: float | None = None,
        pending: list[dict[str, Any]] | None = None,
    ) -> RunResource:  # fmt: skip
        from engine.usage import run_usage
        from functions.models.prices import configured_prices

        parent = None
        if run.parent is not None:
            link = run.parent
            parent = ParentRef(run_id=link["run_id"], seq=link["seq"],
                               task=link.get("task", link.get("node")))  # fmt: skip
        elif run.parent_run_id is not None and run.parent_seq is not None:
            parent = ParentRef(run_id=run.parent_run_id, seq=run.parent_seq)
        return cls(
            **RunSummary.from_record(run).model_dump(),
            input=summary(run.input, run.run_id),
            state=summary(run.state, run.run_id),
            current_node=run.node,
            steps=run.steps,
            max_steps=run.max_steps,
            idempotency_key=run.idempotency_key,
            usage=run_usage(run.state, configured_prices()),
            parent=parent,
            wakes_at=None if wakes_at is None else iso(wakes_at),
            pending=[PendingQuestion.from_question(q) for q in pending or []],
        )


class RunPage(BaseModel):
    """Runs, newest first."""

    model_config = _examples({"items": [_RUN_EXAMPLE], "next_cursor": None})

    items: list[RunSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: no more."
    )


class TaskSummary(BaseModel):
    """One task of a superstep that ran several (its updates are merged into the step's)."""

    task: str = Field(description="The node, or `node[i]` for item i of a map.")
    node: str
    index: int | None = Field(default=None, description="The map item's index.")
    tool: str
    status: Literal["ok", "failed"]
    duration_ms: float
    error: str | None = None
    child_run_id: str | None = Field(
        default=None, description="A subgraph node's task: the child run that did its work."
    )
    attempt: int | None = Field(
        default=None,
        description="The attempt that committed, "
        "when its node retried (or its hop was redelivered).",
    )

    @model_serializer(mode="wrap")
    def _without_no_child(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("child_run_id") is None:
            data.pop("child_run_id", None)
        return data


class AttemptEntry(BaseModel):
    """A failed attempt of a task whose node retries: all a failed attempt commits."""

    seq: int = Field(description="The superstep the task belongs to.")
    task: str
    node: str
    index: int | None = None
    tool: str
    status: Literal["failed"] = "failed"
    attempt: int
    error: str
    error_type: str
    started_at: Timestamp
    duration_ms: float
    retry_at: Timestamp | None = Field(
        description="When the next attempt is due; null: the last one."
    )

    @classmethod
    def from_record(cls, record: AttemptRecord) -> AttemptEntry:
        entry = record.log_entry()
        entry["started_at"] = iso(record.started_at)
        entry["retry_at"] = None if record.retry_at is None else iso(record.retry_at)
        return cls.model_validate(entry)


class LogEntry(BaseModel):
    """One committed superstep, as the execution log shows it (no full state)."""

    model_config = _examples(EXAMPLE_LOG_ENTRY)

    seq: int = Field(description="The superstep (for a chain, the step).")
    node: str = Field(description="The node that ran; several, comma-separated, in parallel.")
    tool: str
    status: Literal["ok", "failed", "cancelled"]
    updates: dict[str, Any]
    next: str | list[str] | None = Field(
        description="Where the run went next: a node, the nodes of the next superstep when "
        "it runs several, END or null at the end."
    )
    started_at: Timestamp
    duration_ms: float
    error: str | None
    attempt: int
    run_status: RunStatus
    tasks: list[TaskSummary] | None = Field(
        default=None,
        description="A superstep of several tasks: each task (at most 100, failed ones first, "
        "for a wide one: every task has its own record, GET /runs/{id}/steps/{seq}).",
    )
    tasks_total: int | None = Field(
        default=None, description="How many tasks a superstep ran when tasks lists only some."
    )
    child_run_id: str | None = Field(
        default=None,
        description="A superstep of one subgraph task: the child run that did "
        "its work (GET /runs/{child_run_id}).",
    )
    source: Literal["fork", "redrive", "edit"] | None = Field(
        default=None,
        description="An entry a command wrote (no tool ran): a fork's first, a redrive, a "
        "state edit.",
    )

    @model_serializer(mode="wrap")
    def _without_empty_tasks(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A chain's steps keep the shape they always had: no "tasks": null on each.
        data: dict[str, Any] = handler(self)
        for key in ("tasks", "tasks_total", "child_run_id", "source"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @classmethod
    def from_record(cls, step: StepRecord) -> LogEntry:
        entry = step.log_entry()
        entry["updates"] = summary(step.updates, step.run_id)
        entry["started_at"] = iso(step.started_at)
        return cls.model_validate(entry)


class TaskDetail(TaskSummary):
    """One task of a superstep with what it returned."""

    updates: dict[str, Any] = Field(description="The task's own updates, before the merge.")
    attempt: int
    started_at: Timestamp

    @classmethod
    def from_record(cls, task: TaskRecord) -> TaskDetail:
        return cls(**task.summary(), updates=task.updates, attempt=task.attempt,
                   started_at=iso(task.started_at))  # fmt: skip


class StepDetail(LogEntry):
    """One committed superstep: the log entry, the state after it, and its tasks' updates."""

    state: State = Field(description="The state after this superstep.")
    task_details: list[TaskDetail] = Field(
        default_factory=list,
        description="A superstep of several tasks: a page of its tasks with their own "
        "updates, in the order of their slots (`task_after`, `task_limit`).",
    )
    task_next: str | None = Field(
        default=None, description="Pass as `task_after` for the next page of tasks; null: no more."
    )
    task_count: int = Field(description="How many tasks the superstep ran (1 for a chain step).")

    @classmethod
    def from_records(
        cls, step: StepRecord, tasks: list[TaskRecord], task_next: str | None = None
    ) -> StepDetail:
        """``tasks``: one page of the superstep's tasks; ``task_next``: the next page's cursor."""
        entry = LogEntry.from_record(step).model_dump()
        details = [TaskDetail.from_record(task) for task in tasks]
        count = step.tasks_total or len(step.tasks) or 1
        state = summary(step.state, step.run_id)
        return cls(
            **entry, state=state, task_details=details, task_next=task_next, task_count=count
        )


class StepPage(BaseModel):
    """A page of the execution log, in step order."""

    model_config = _examples({"items": [EXAMPLE_LOG_ENTRY], "next_after": None})

    items: list[LogEntry]
    next_after: int | None = Field(description="Pass as `after` for the next page; null: no more.")
    attempts: list[AttemptEntry] = Field(
        default_factory=list,
        description="The failed attempts of retried tasks in these supersteps, and, on the "
        "last page of a running run, in the superstep still open.",
    )


# -- tools and health -----------------------------------------------------------------------
class ToolParameters(BaseModel):
    reads: list[str]
    writes: list[str]


class ToolDescription(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    description: str
    parameters: ToolParameters
    is_async: bool = Field(alias="async")
    input_schema: dict[str, Any] | None = Field(
        default=None,
        description="The JSON schema of a model's call to this tool (absent: a node tool only)",
    )


class ToolList(BaseModel):
    model_config = _examples(
        {
            "tools": [
                {
                    "name": "detect_issues",
                    "description": "Find issues: size, arguments, nesting, docstrings...",
                    "parameters": {"reads": ["code"], "writes": ["issues"]},
                    "async": False,
                }
            ]
        }
    )

    tools: list[ToolDescription]


class Me(BaseModel):
    """Who the token says the caller is, and where to follow runs live."""

    model_config = _examples(
        {"user": "alice", "admin": False, "websocket_url": "wss://abc123.example/prod"}
    )

    user: str = Field(description="The token's `sub`: the owner of what the caller creates.")
    admin: bool = Field(description="Whether the caller sees every owner's graphs and runs.")
    websocket_url: str | None = Field(
        description="The WebSocket API to subscribe to runs on (connect with `?token=`); "
        "null when the deployment does not say."
    )


class Health(BaseModel):
    model_config = _examples(
        {
            "status": "ok",
            "version": "0.1.0",
            "websocket": "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod",
        }
    )

    status: Literal["ok"]
    version: str
    websocket: str | None = Field(
        default=None,
        description="Where clients follow runs: this deployment's WebSocket API "
        "(so that one setting, the API's URL, finds the rest).",
    )
