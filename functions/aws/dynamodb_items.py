"""Records <-> DynamoDB items (low-level attribute-value dicts) for the single-table store.

Item shapes (``tests/contract/test_dynamodb_items.py`` snapshots each one)::

    graph          PK=GRAPH#<id>   SK=GRAPH        name, definition, created_at, owner?
                   GSI1PK=GRAPHS   GSI1SK=<created iso>#<id>            (graphs, newest first)
                   GSI3PK=OWNER#<owner>#GRAPHS  GSI3SK=<created iso>#<id>   (if owned)
    run header     PK=RUN#<id>     SK=RUN          graph_id, status, input, max_steps, node,
                   created_at, updated_at, error?, idempotency_key?, input_digest?, owner?,
                   parent? (a child run: its parent's run, superstep and task), breakpoints?
                   GSI1PK=GRAPH#<graph id>  GSI1SK=<created iso>#<id>   (runs by graph)
                   GSI2PK=STATUS#<status>#<shard>  GSI2SK=<created iso>#<id>   (runs by status)
                   GSI3PK=OWNER#<owner>#RUNS    GSI3SK=<created iso>#<id>   (if owned)
    step           PK=RUN#<id>     SK=STEP#000042  node, tool, status, delta, state?,
                   next_node?, started_at, duration_ms, error?, attempt, committed_by?, notified?,
                   run_status, graph_id?, max_steps?, breakpoints?, superstep? (next, joins, tasks,
                   total?), child_run_id? (a superstep of one subgraph task), expires_at? (TTL)
    task           PK=RUN#<id>     SK=TASK#000042#<index or ->#<node>   node, tool, status,
                   updates, targets, started_at, duration_ms, attempt, index?, error?,
                   committed_by?, sends?, child_run_id?, expires_at? (TTL)
                                   (a task of a superstep of several)
    task count     PK=RUN#<id>     SK=FANIN#000042   done, last_at?, expires_at? (TTL)
                   (a superstep with many readers; last_at: the end of the task that counted last)
    fold           PK=RUN#<id>     SK=FOLD#000042    cursor, state, folded, node, index?, pages,
                   committed_by?, updated_at    (a wide superstep's close, part way: engine/fold.py)
    attempt        PK=RUN#<id>     SK=ATTEMPT#000042#<index or ->#0001#<node>   node, tool,
                   error, error_type, started_at, duration_ms, retry_at?, index?,
                   committed_by?, expires_at? (TTL)
                                   (a failed attempt of a retried task, engine/retries.py)
    connection     PK=CONN#<id>    SK=CONN         endpoint, expires_at (TTL), owner?, admin?
    subscription   PK=RUN#<run>    SK=SUB#<conn>   endpoint, expires_at (TTL), replayed_through?
                   PK=CONN#<conn>  SK=SUB#<run>    expires_at (TTL)

The indexes project only what listings show (:data:`LISTED_ATTRIBUTES`): a listed graph or
run is read back with :func:`listed_graph_from_item` / :func:`listed_run_from_item`.

Optional attributes (``?``) are absent rather than NULL. The run id and seq of a step live in
its keys only: every byte of a step item is paid for on every commit.

Values are written as hand-built attribute-value dicts rather than with boto3's
``TypeSerializer``: that one wants ``Decimal`` for every number and cannot choose between a
JSON string and a compressed binary, which is the point of :func:`json_attr`.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine import deltas
from engine.errors import InvalidInputError
from engine.ports import (
    AttemptRecord,
    Connection,
    FoldRecord,
    GraphRecord,
    RunRecord,
    StepRecord,
    TaskRecord,
)

Item = dict[str, Any]
"""A DynamoDB item as the low-level client reads and writes it: ``{"name": {"S": "..."}}``."""

# WRUs are billed per started KB of item, and RRUs per 4 KB: a 1 KB state written as JSON
# plus its keys and log fields would cost 2 WRU per step. JSON above this size is stored
# zlib-compressed (typically 2-4x smaller), so a step with a ~1 KB state stays within 1 KB.
# Below it, compression gains too little to be worth a binary nobody can read in the console.
COMPRESS_ABOVE = 700
# DynamoDB refuses items above 400 KB: a step's state (or delta), compressed, may take this
# much of it; 10 KB is left for the rest. (A snapshot's updates name their keys only: their
# values are in its state.)
STATE_BUDGET = 390_000
MAX_ITEM_BYTES = 400 * 1024

GRAPHS_PARTITION = "GRAPHS"
STEP_PREFIX = "STEP#"
TASK_PREFIX = "TASK#"
SUB_PREFIX = "SUB#"
FANIN_PREFIX = "FANIN#"
FOLD_PREFIX = "FOLD#"
ATTEMPT_PREFIX = "ATTEMPT#"


# ---------------------------------------------------------------------------- keys


def graph_key(graph_id: str) -> Item:
    return {"PK": {"S": f"GRAPH#{graph_id}"}, "SK": {"S": "GRAPH"}}


def run_key(run_id: str) -> Item:
    return {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": "RUN"}}


def step_sk(seq: int) -> str:
    # Six digits sort correctly up to 999,999 slots; runs stop at MAX_STEPS_CEILING (10,000).
    return f"{STEP_PREFIX}{seq:06d}"


def step_key(run_id: str, seq: int) -> Item:
    return {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": step_sk(seq)}}


def task_sk_prefix(seq: int) -> str:
    """The common prefix of superstep ``seq``'s task slots: the fan-in queries it."""
    return f"{TASK_PREFIX}{seq:06d}#"


def task_count_key(run_id: str, seq: int) -> Item:
    """The count of superstep ``seq``'s committed tasks, kept only for a superstep with many
    readers (engine/protocol.py): ``FANIN#`` sorts before ``RUN``, outside every range and
    prefix the run's queries read."""
    return {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": f"{FANIN_PREFIX}{seq:06d}"}}


def fold_key(run_id: str, seq: int) -> Item:
    """Superstep ``seq``'s fold record: ``FOLD#`` sorts before ``RUN``, outside every range
    and prefix the run's queries read."""
    return {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": f"{FOLD_PREFIX}{seq:06d}"}}


def task_key(run_id: str, seq: int, node: str, index: int | None) -> Item:
    # A node id is any string, so it goes last and the index (or "-") before it: the key
    # stays unambiguous whatever the id holds.
    slot = "-" if index is None else f"{index:06d}"
    return {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": f"{task_sk_prefix(seq)}{slot}#{node}"}}


def attempt_sk_prefix(seq: int) -> str:
    """The common prefix of superstep ``seq``'s attempt slots. ``ATTEMPT#`` sorts before
    ``RUN`` and ``STEP#``, outside every range the slot check and the log read."""
    return f"{ATTEMPT_PREFIX}{seq:06d}#"


def attempt_key(run_id: str, seq: int, node: str, index: int | None, attempt: int) -> Item:
    slot = "-" if index is None else f"{index:06d}"
    sk = f"{attempt_sk_prefix(seq)}{slot}#{attempt:04d}#{node}"
    return {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": sk}}


def connection_key(connection_id: str) -> Item:
    return {"PK": {"S": f"CONN#{connection_id}"}, "SK": {"S": "CONN"}}


STATUS_SHARDS = 4
"""How many GSI2 partitions each status is spread over. One index partition takes at most
1,000 writes per second, and every run start writes ``running``'s: with one partition that
would cap run starts at about 1,000 a second (less with the end of each run moving it out).
A run's shard is a hash of its id, so the start and the end of a run compute the same
partition; a listing by status queries every shard and merges them by time
(:mod:`functions.aws.dynamodb_pages`). Changing this number moves partitions: runs written
under another count are not listed until their headers are written again."""


def status_shard(run_id: str) -> int:
    """The GSI2 shard of ``run_id`` (CRC-32: stable across processes, unlike ``hash``)."""
    return zlib.crc32(run_id.encode()) % STATUS_SHARDS


def status_partition(status: str, run_id: str) -> str:
    """The GSI2 partition that lists ``run_id`` while it has ``status``."""
    return f"STATUS#{status}#{status_shard(run_id)}"


def status_partitions(status: str) -> list[str]:
    """Every GSI2 partition of ``status``, one per shard."""
    return [f"STATUS#{status}#{shard}" for shard in range(STATUS_SHARDS)]


def legacy_status_partition(status: str) -> str:
    """The GSI2 partition of ``status`` before it was sharded (``STATUS#<status>``): a
    header written then stays there until it is written again (its run's end moves it to
    its shard)."""
    return f"STATUS#{status}"


def listed_status_partitions(status: str) -> list[str]:
    """The GSI2 partitions a listing of ``status`` reads: every shard, and the unsharded
    partition of headers written before the shards (:func:`legacy_status_partition`), read
    as one more shard so that such runs are still listed, and running ones still swept.
    It costs one more Query per listing page (half a read unit when empty), not a backfill
    that would rewrite every old header."""
    return [*status_partitions(status), legacy_status_partition(status)]


def graph_partition(graph_id: str) -> str:
    return f"GRAPH#{graph_id}"


def owner_partition(owner: str, kind: str) -> str:
    """GSI3's partition of one owner's graphs (``kind`` GRAPHS) or runs (RUNS)."""
    return f"OWNER#{owner}#{kind}"


def _put_owner(item: Item, owner: str | None, kind: str, sort: str) -> None:
    """The owner and its index keys; an unowned item stays out of GSI3 (sparse index)."""
    if owner is not None:
        item["owner"] = {"S": owner}
        item["GSI3PK"] = {"S": owner_partition(owner, kind)}
        item["GSI3SK"] = {"S": sort}


def iso(ts: float) -> str:
    """UTC ISO-8601 with microseconds: sorts like the timestamp (years 1000-9999)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _suffix(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


# ---------------------------------------------------------------------------- values


def num(value: float | int) -> dict[str, str]:
    """A number attribute; floats keep their shortest exact form, never an exponent."""
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": format(Decimal(repr(float(value))), "f")}


def _dumps(value: Any) -> bytes:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: only the escaped form is valid UTF-8
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def json_attr(value: Any) -> dict[str, Any]:
    """Compact JSON as a string, or zlib-compressed into a binary when larger than
    :data:`COMPRESS_ABOVE` bytes (see there for why)."""
    raw = _dumps(value)
    if len(raw) <= COMPRESS_ABOVE:
        return {"S": raw.decode()}
    return {"B": zlib.compress(raw, 9)}


def json_value(attr: dict[str, Any]) -> Any:
    """The inverse of :func:`json_attr`."""
    if "B" in attr:
        return json.loads(zlib.decompress(bytes(attr["B"])))
    return json.loads(attr["S"])


def _opt_str(item: Item, name: str) -> str | None:
    attr = item.get(name)
    return None if attr is None else str(attr["S"])


def _put_opt(item: Item, name: str, value: str | None) -> None:
    if value is not None:
        item[name] = {"S": value}


# ---------------------------------------------------------------------------- item size


def _number_size(text: str) -> int:
    digits = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "").strip("0")
    return (max(1, len(digits)) + 1) // 2 + 1


def attr_size(attr: dict[str, Any]) -> int:
    """Billed size of one attribute value, by DynamoDB's published rules."""
    (kind, value), *_ = attr.items()
    if kind == "S":
        return len(str(value).encode())
    if kind == "B":
        return len(value)
    if kind == "N":
        return _number_size(str(value))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attr_size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(attr_size(v) + 1 for v in value)
    if kind == "SS":
        return sum(len(v.encode()) for v in value)
    if kind == "NS":
        return sum(_number_size(v) for v in value)
    if kind == "BS":
        return sum(len(v) for v in value)
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Item) -> int:
    """Billed size of an item: attribute names plus values (WRU per 1 KB, RRU per 4 KB)."""
    return sum(len(name.encode()) + attr_size(attr) for name, attr in item.items())


# ---------------------------------------------------------------------------- graphs


def graph_item(graph: GraphRecord) -> Item:
    item: Item = {
        **graph_key(graph.graph_id),
        "name": {"S": graph.name},
        "definition": json_attr(graph.definition),
        "created_at": num(graph.created_at),
        "GSI1PK": {"S": GRAPHS_PARTITION},
        "GSI1SK": {"S": f"{iso(graph.created_at)}#{graph.graph_id}"},
    }
    _put_owner(item, graph.owner, "GRAPHS", item["GSI1SK"]["S"])
    return item


def graph_from_item(item: Item) -> GraphRecord:
    return GraphRecord(
        graph_id=_suffix(item["PK"]["S"], "GRAPH#"),
        name=item["name"]["S"],
        definition=json_value(item["definition"]),
        created_at=float(item["created_at"]["N"]),
        owner=_opt_str(item, "owner"),
    )


# ---------------------------------------------------------------------------- runs


def run_item(run: RunRecord) -> Item:
    """The run header. The view fields (state, steps) are not stored: they come from the
    latest step, so a step commit never has to touch the header."""
    sort = f"{iso(run.created_at)}#{run.run_id}"
    item: Item = {
        **run_key(run.run_id),
        "graph_id": {"S": run.graph_id},
        "status": {"S": run.status},
        "input": json_attr(run.input),
        "max_steps": num(run.max_steps),
        "created_at": num(run.created_at),
        "updated_at": num(run.updated_at),
        "GSI1PK": {"S": graph_partition(run.graph_id)},
        "GSI1SK": {"S": sort},
        "GSI2PK": {"S": status_partition(run.status, run.run_id)},
        "GSI2SK": {"S": sort},
    }
    _put_opt(item, "node", run.node)
    _put_opt(item, "error", run.error)
    _put_opt(item, "idempotency_key", run.idempotency_key)
    _put_opt(item, "input_digest", run.input_digest)
    _put_opt(item, "parent_run_id", run.parent_run_id)
    if run.parent_seq is not None:
        item["parent_seq"] = num(run.parent_seq)
    _put_owner(item, run.owner, "RUNS", sort)
    if run.parent is not None:  # a child run: where its end is reported (engine/subgraphs.py)
        item["parent"] = json_attr(run.parent)
    if run.breakpoints:  # its own breakpoints (engine/pauses.py)
        item["breakpoints"] = json_attr(run.breakpoints)
    return item


def run_from_item(item: Item) -> RunRecord:
    """The header as a record; its view fields are empty (see ``RunRecord.with_latest``)."""
    return RunRecord(
        run_id=_suffix(item["PK"]["S"], "RUN#"),
        graph_id=item["graph_id"]["S"],
        status=item["status"]["S"],
        input=json_value(item["input"]),
        max_steps=int(item["max_steps"]["N"]),
        created_at=float(item["created_at"]["N"]),
        updated_at=float(item["updated_at"]["N"]),
        node=_opt_str(item, "node"),
        error=_opt_str(item, "error"),
        idempotency_key=_opt_str(item, "idempotency_key"),
        input_digest=_opt_str(item, "input_digest"),
        owner=_opt_str(item, "owner"),
        parent=json_value(item["parent"]) if "parent" in item else None,
        parent_run_id=_opt_str(item, "parent_run_id"),
        parent_seq=int(item["parent_seq"]["N"]) if "parent_seq" in item else None,
        breakpoints=json_value(item["breakpoints"]) if "breakpoints" in item else None,
    )


LISTED_ATTRIBUTES = ("name", "graph_id", "status", "error", "owner", "created_at", "updated_at")
"""The non-key attributes every index projects (template.yaml's ``NonKeyAttributes``): what
the graph and run listings show. The input and the definition stay in the table, so an index
write costs what these few attributes weigh, whatever the run was started with."""


def listed_graph_from_item(item: Item) -> GraphRecord:
    """A graph as an index lists it: its definition is not projected and reads as ``{}``."""
    return graph_from_item({**item, "definition": {"S": "{}"}})


def listed_run_from_item(item: Item) -> RunRecord:
    """A run as an index lists it: input ``{}`` and max_steps 0 (neither is projected)."""
    return run_from_item({**item, "input": {"S": "{}"}, "max_steps": {"N": "0"}})


# ---------------------------------------------------------------------------- steps


def step_item(step: StepRecord, stored: deltas.Stored | None = None) -> Item:
    """The step's item: its delta (:mod:`engine.deltas`), and its full state when ``stored``
    is a snapshot (``None``: a snapshot, its updates named by key)."""
    if stored is None:
        stored = deltas.Stored(step.seq, deltas.keys_only(step.updates), step.state)
    item: Item = {
        **step_key(step.run_id, step.seq),
        "node": {"S": step.node},
        "tool": {"S": step.tool},
        "status": {"S": step.status},
        "delta": json_attr(stored.delta),
    }
    if stored.state is not None:
        item["state"] = json_attr(stored.state)
    item.update({
        "started_at": num(step.started_at),
        "duration_ms": num(step.duration_ms),
        "attempt": num(step.attempt),
        "run_status": {"S": step.run_status},
    })  # fmt: skip
    _put_opt(item, "next_node", step.next_node)
    _put_opt(item, "error", step.error)
    _put_opt(item, "committed_by", step.committed_by or None)
    _put_opt(item, "child_run_id", step.child_run_id)
    _put_opt(item, "source", step.source or None)
    if step.notified:
        item["notified"] = {"SS": list(step.notified)}
    # The run's graph and step limit, copied down from the header step by step: the next
    # superstep's hops are checked against them (engine/protocol.py, the slot check).
    _put_opt(item, "graph_id", step.graph_id or None)
    if step.max_steps:
        item["max_steps"] = num(step.max_steps)
    if step.breakpoints:  # and the run's own breakpoints, the same way (engine/pauses.py)
        item["breakpoints"] = json_attr(step.breakpoints)
    if step.next_nodes or step.joins or step.tasks or step.sends or step.deferred:
        superstep: dict[str, Any] = {"next": list(step.next_nodes), "joins": step.joins,
                                     "tasks": step.tasks}  # fmt: skip
        if step.tasks_total:
            superstep["total"] = step.tasks_total
        if step.sends:  # a graph without routers' sends or deferred nodes stays as it was
            superstep["sends"] = list(step.sends)
        if step.deferred:
            superstep["deferred"] = list(step.deferred)
        item["superstep"] = json_attr(superstep)
    return item


def stored_of(item: Item) -> deltas.Stored:
    """How a step item keeps its state: its delta, and its full state if it has one. An item
    written before deltas holds ``updates`` (their values in its full state)."""
    seq = int(_suffix(item["SK"]["S"], STEP_PREFIX))
    state = json_value(item["state"]) if "state" in item else None
    if "delta" in item:
        return deltas.Stored(seq, json_value(item["delta"]), state)
    return deltas.Stored(seq, deltas.keys_only(json_value(item["updates"])), state)


def header_stored(item: Item) -> deltas.Stored:
    """The run header as the full state before superstep 0 (its input)."""
    return deltas.Stored(deltas.HEADER, {}, json_value(item["input"]))


def step_from_item(
    item: Item, state: dict[str, Any] | None = None, delta: deltas.Delta | None = None
) -> StepRecord:
    """The step of ``item`` with ``state`` the state after it (rebuilt by the store from
    the deltas, :mod:`engine.deltas`); ``None``: the item's own full state, or an empty one
    when it keeps a delta only. ``delta``: the item's, its large values restored."""
    stored = stored_of(item)
    if delta is not None:
        stored = deltas.Stored(stored.seq, delta, stored.state)
    if state is None:
        state = stored.state if stored.state is not None else {}
    return StepRecord(
        run_id=_suffix(item["PK"]["S"], "RUN#"),
        seq=int(_suffix(item["SK"]["S"], STEP_PREFIX)),
        node=item["node"]["S"],
        tool=item["tool"]["S"],
        status=item["status"]["S"],
        updates=deltas.updates_of(stored.delta, state),
        state=state,
        next_node=_opt_str(item, "next_node"),
        started_at=float(item["started_at"]["N"]),
        duration_ms=float(item["duration_ms"]["N"]),
        error=_opt_str(item, "error"),
        attempt=int(item["attempt"]["N"]),
        committed_by=_opt_str(item, "committed_by") or "",
        source=_opt_str(item, "source") or "",
        run_status=item["run_status"]["S"],
        notified=tuple(sorted(item["notified"]["SS"])) if "notified" in item else (),
        graph_id=_opt_str(item, "graph_id") or "",
        max_steps=int(item["max_steps"]["N"]) if "max_steps" in item else 0,
        breakpoints=json_value(item["breakpoints"]) if "breakpoints" in item else None,
        child_run_id=_opt_str(item, "child_run_id"),
        **_superstep_fields(item),
    )


LISTED_STEP = (
    "PK", "SK", "node", "tool", "status", "started_at", "duration_ms", "attempt", "run_status",
    "next_node", "error", "committed_by", "child_run_id", "source", "graph_id", "max_steps",
    "superstep",
)  # fmt: skip
"""What a step listing without states reads of each step item: all but its delta, its
state and who was notified."""
LISTED_STEP_NAMES = {f"#{name}": name for name in LISTED_STEP}
LISTED_STEP_PROJECTION = ", ".join(LISTED_STEP_NAMES)


def listed_step_from_item(item: Item) -> StepRecord:
    """A step as a listing without states reads it: state and updates empty."""
    return step_from_item({**item, "delta": {"S": "{}"}}, {}, {})


def _superstep_fields(item: Item) -> dict[str, Any]:
    if "superstep" not in item:
        return {}
    doc = json_value(item["superstep"])
    return {"next_nodes": tuple(doc["next"]), "joins": doc["joins"],
            "tasks": tuple(doc["tasks"]), "tasks_total": doc.get("total", 0),
            "sends": tuple(doc.get("sends", ())),
            "deferred": tuple(doc.get("deferred", ()))}  # fmt: skip


# ---------------------------------------------------------------------------- tasks


def task_item(task: TaskRecord) -> Item:
    item: Item = {
        **task_key(task.run_id, task.seq, task.node, task.index),
        "node": {"S": task.node},
        "tool": {"S": task.tool},
        "status": {"S": task.status},
        "updates": json_attr(task.updates),
        "targets": json_attr(list(task.targets)),
        "started_at": num(task.started_at),
        "duration_ms": num(task.duration_ms),
        "attempt": num(task.attempt),
    }
    if task.index is not None:
        item["index"] = num(task.index)
    _put_opt(item, "error", task.error)
    _put_opt(item, "committed_by", task.committed_by or None)
    if task.sends:
        item["sends"] = json_attr(list(task.sends))
    _put_opt(item, "child_run_id", task.child_run_id)
    return item


def task_from_item(item: Item) -> TaskRecord:
    seq = int(item["SK"]["S"][len(TASK_PREFIX) :].split("#", 1)[0])
    return TaskRecord(
        run_id=_suffix(item["PK"]["S"], "RUN#"),
        seq=seq,
        node=item["node"]["S"],
        index=int(item["index"]["N"]) if "index" in item else None,
        tool=item["tool"]["S"],
        status=item["status"]["S"],
        updates=json_value(item["updates"]),
        targets=tuple(json_value(item["targets"])),
        started_at=float(item["started_at"]["N"]),
        duration_ms=float(item["duration_ms"]["N"]),
        error=_opt_str(item, "error"),
        attempt=int(item["attempt"]["N"]),
        committed_by=_opt_str(item, "committed_by") or "",
        sends=tuple(json_value(item["sends"])) if "sends" in item else (),
        child_run_id=_opt_str(item, "child_run_id"),
    )


# ---------------------------------------------------------------------------- folds


def fold_item(fold: FoldRecord) -> Item:
    """The item of ``fold`` as given: the store puts its large values in blobs first."""
    item: Item = {
        **fold_key(fold.run_id, fold.seq),
        "cursor": {"S": fold.cursor},
        "state": json_attr(fold.state),
        "folded": json_attr(fold.folded),
        "node": {"S": fold.node},
        "pages": num(fold.pages),
        "updated_at": num(fold.updated_at),
    }
    if fold.index is not None:
        item["index"] = num(fold.index)
    _put_opt(item, "committed_by", fold.committed_by or None)
    return item


def fold_from_item(item: Item) -> FoldRecord:
    return FoldRecord(
        run_id=_suffix(item["PK"]["S"], "RUN#"),
        seq=int(item["SK"]["S"][len(FOLD_PREFIX) :]),
        cursor=item["cursor"]["S"],
        state=json_value(item["state"]),
        folded=json_value(item["folded"]),
        node=item["node"]["S"],
        index=int(item["index"]["N"]) if "index" in item else None,
        pages=int(item["pages"]["N"]),
        committed_by=_opt_str(item, "committed_by") or "",
        updated_at=float(item["updated_at"]["N"]),
    )


# ---------------------------------------------------------------------------- attempts


def attempt_item(attempt: AttemptRecord) -> Item:
    item: Item = {
        **attempt_key(attempt.run_id, attempt.seq, attempt.node, attempt.index, attempt.attempt),
        "node": {"S": attempt.node},
        "tool": {"S": attempt.tool},
        "error": {"S": attempt.error},
        "error_type": {"S": attempt.error_type},
        "started_at": num(attempt.started_at),
        "duration_ms": num(attempt.duration_ms),
    }
    if attempt.index is not None:
        item["index"] = num(attempt.index)
    if attempt.retry_at is not None:
        item["retry_at"] = num(attempt.retry_at)
    _put_opt(item, "committed_by", attempt.committed_by or None)
    return item


def attempt_from_item(item: Item) -> AttemptRecord:
    parts = item["SK"]["S"][len(ATTEMPT_PREFIX) :].split("#", 3)
    return AttemptRecord(
        run_id=_suffix(item["PK"]["S"], "RUN#"),
        seq=int(parts[0]),
        node=item["node"]["S"],
        index=int(item["index"]["N"]) if "index" in item else None,
        attempt=int(parts[2]),
        tool=item["tool"]["S"],
        error=item["error"]["S"],
        error_type=item["error_type"]["S"],
        started_at=float(item["started_at"]["N"]),
        duration_ms=float(item["duration_ms"]["N"]),
        retry_at=float(item["retry_at"]["N"]) if "retry_at" in item else None,
        committed_by=_opt_str(item, "committed_by") or "",
    )


# ---------------------------------------------------------------------------- connections


def connection_item(connection: Connection) -> Item:
    item: Item = {
        **connection_key(connection.connection_id),
        "endpoint": {"S": connection.endpoint},
        "expires_at": num(int(connection.expires_at)),
    }
    _put_opt(item, "owner", connection.owner)
    if connection.admin:
        item["admin"] = {"BOOL": True}
    return item


def connection_from_item(item: Item) -> Connection:
    return Connection(
        connection_id=_suffix(item["PK"]["S"], "CONN#"),
        endpoint=item["endpoint"]["S"],
        expires_at=int(item["expires_at"]["N"]),
        owner=_opt_str(item, "owner"),
        admin=bool(item.get("admin", {}).get("BOOL", False)),
    )


def subscription_items(connection: Connection, run_id: str) -> tuple[Item, Item]:
    """The two items of one subscription: under the run (what ``subscribers`` reads, with
    everything needed to post, so no per-connection read) and under the connection (what
    ``delete_connection`` finds). Both expire with the connection."""
    expires = num(int(connection.expires_at))
    by_run: Item = {
        "PK": {"S": f"RUN#{run_id}"},
        "SK": {"S": f"{SUB_PREFIX}{connection.connection_id}"},
        "endpoint": {"S": connection.endpoint},
        "expires_at": expires,
    }
    by_connection: Item = {
        "PK": {"S": f"CONN#{connection.connection_id}"},
        "SK": {"S": f"{SUB_PREFIX}{run_id}"},
        "expires_at": expires,
    }
    return by_run, by_connection


def subscription_keys(connection_id: str, run_id: str) -> tuple[Item, Item]:
    return (
        {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": f"{SUB_PREFIX}{connection_id}"}},
        {"PK": {"S": f"CONN#{connection_id}"}, "SK": {"S": f"{SUB_PREFIX}{run_id}"}},
    )


def subscriber_from_item(item: Item) -> Connection:
    replayed = item.get("replayed_through")
    return Connection(
        connection_id=_suffix(item["SK"]["S"], SUB_PREFIX),
        endpoint=item["endpoint"]["S"],
        expires_at=int(item["expires_at"]["N"]),
        replayed_through=int(replayed["N"]) if replayed is not None else None,
    )


# ---------------------------------------------------------------------------- cursors


def encode_cursor(doc: Any) -> str:
    """An opaque cursor: base64url of compact JSON (without padding)."""
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The JSON a cursor holds; InvalidInputError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError("invalid cursor") from None


def index_position(item: Item, index: str) -> dict[str, str]:
    """Where a query of ``index`` stands after ``item``: its table and index keys."""
    names = ("PK", "SK", f"{index}PK", f"{index}SK")
    return {name: str(item[name]["S"]) for name in names}


def start_key(position: Any, index: str, partition: str) -> Item:
    """``ExclusiveStartKey`` from a position that a cursor carried, checked to belong to
    the same query (same index and partition) so a cursor cannot be replayed elsewhere."""
    names = {"PK", "SK", f"{index}PK", f"{index}SK"}
    if (
        not isinstance(position, dict)
        or set(position) != names
        or not all(isinstance(v, str) for v in position.values())
        or position[f"{index}PK"] != partition
    ):
        raise InvalidInputError("invalid cursor")
    return {name: {"S": value} for name, value in position.items()}
