"""Paged listings over the table's indexes (graphs; runs by graph, status, owner, or all).

Runs by status and all runs are merges of GSI2's sharded partitions (:func:`merged_page`).

Every listing is newest first; a cursor is opaque to callers (base64url JSON, see
:func:`~functions.aws.dynamodb_items.encode_cursor`) and is checked to belong to the listing
it is passed to, so a forged or replayed one raises InvalidInputError instead of a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from engine.errors import InvalidInputError
from engine.ports import RunStatus
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_items import Item

Query = Callable[..., dict[str, Any]]
"""``query(invalid, **kwargs)``: one Query request; ``invalid`` is raised if DynamoDB refuses
the request's input (a start key built from a cursor)."""

STATUSES: tuple[str, ...] = get_args(RunStatus)
# A page of a filtered listing stops after this many queries even if it is short (its cursor
# then resumes where the last query stopped): a very selective filter costs bounded time.
MAX_QUERIES_PER_PAGE = 10
INVALID_CURSOR = "invalid cursor"


def index_page(
    query: Query,
    table: str,
    index: str,
    partition: str,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    owner: str | None = None,
) -> tuple[list[Item], str | None]:
    """One page of a GSI partition, newest first, optionally filtered by run status and/or
    owner (filters, not keys: the partition is the selective part).

    One item more than asked is read, so the cursor is ``None`` exactly when nothing follows
    (unless the page stopped at :data:`MAX_QUERIES_PER_PAGE`). The cursor is the position of
    the last item returned (table and index keys), usable as ``ExclusiveStartKey``: a
    filtered page can then stop mid-query without losing the items after it.
    """
    limit = max(1, limit)
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": f"{index}PK"},
        "ExpressionAttributeValues": {":pk": {"S": partition}},
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }
    _add_filters(kwargs, {"status": status, "owner": owner})
    invalid = None
    if cursor:
        kwargs["ExclusiveStartKey"] = items.start_key(items.decode_cursor(cursor), index, partition)
        invalid = InvalidInputError(INVALID_CURSOR)
    found: list[Item] = []
    last_key: Item | None = None
    for _ in range(MAX_QUERIES_PER_PAGE):
        response = query(invalid, **kwargs)
        found.extend(response.get("Items", []))
        last_key = response.get("LastEvaluatedKey")
        if last_key is None or len(found) > limit:
            break
        kwargs["ExclusiveStartKey"] = last_key
    if len(found) > limit:
        found = found[:limit]
        last_key = found[-1]
    if last_key is None:
        return found, None
    return found, items.encode_cursor(items.index_position(last_key, index))


def _add_filters(kwargs: dict[str, Any], equal: dict[str, str | None]) -> None:
    """``FilterExpression`` requiring each attribute given a value to equal it."""
    terms = []
    for name, value in equal.items():
        if value is not None:
            terms.append(f"#{name} = :{name}")
            kwargs["ExpressionAttributeNames"][f"#{name}"] = name
            kwargs["ExpressionAttributeValues"][f":{name}"] = {"S": value}
    if terms:
        kwargs["FilterExpression"] = " AND ".join(terms)


def status_page(query: Query, table: str, status: str, limit: int, cursor: str | None
                ) -> tuple[list[Item], str | None]:  # fmt: skip
    """The runs with ``status``, newest first: a merge of the status's GSI2 shards
    (:data:`~functions.aws.dynamodb_items.STATUS_SHARDS`), and its unsharded partition of
    older headers (:func:`~functions.aws.dynamodb_items.listed_status_partitions`)."""
    partitions = items.listed_status_partitions(status)
    return merged_page(query, table, status, partitions, limit, cursor)


def all_runs_page(query: Query, table: str, limit: int, cursor: str | None
                  ) -> tuple[list[Item], str | None]:  # fmt: skip
    """Every run, newest first, as a merge of every status's GSI2 shards.

    Why a merge: a Scan is unordered and reads the whole table (steps included); a single
    "all runs" index partition would take every run's writes, and one partition accepts at
    most 1,000 writes per second, which would cap how fast runs can start.
    """
    partitions = [p for status in STATUSES for p in items.listed_status_partitions(status)]
    return merged_page(query, table, ALL, partitions, limit, cursor)


ALL = "*"
"""The listing name of every run (a status names the listing of its runs)."""


def merged_page(
    query: Query, table: str, listing: str, partitions: list[str], limit: int, cursor: str | None
) -> tuple[list[Item], str | None]:
    """One page of the newest ``limit`` runs of several GSI2 partitions, merged by time.

    Each partition is queried for at most ``limit + 1`` items, so a page reads little more
    than ``limit`` items per partition. The cursor names its ``listing`` (a status, or
    :data:`ALL`) and holds each partition's position: the sort key of the last item taken
    from it (``null``: nothing taken yet; absent: exhausted). A partition whose query stopped
    early (``Limit``, or the 1 MB cap) bounds the page to items no older than the last one
    it returned, so no unread item of it can belong before an item this page returns. A run
    that changes status while pages are being walked moves to another partition and may be
    listed twice or not at all, as in any listing of a changing set.
    """
    limit = max(1, limit)
    positions = _decode_positions(cursor, listing, partitions)
    fetched: dict[str, list[Item]] = {}
    more: dict[str, Item | None] = {}
    for partition, position in positions.items():
        kwargs: dict[str, Any] = {
            "TableName": table,
            "IndexName": "GSI2",
            "KeyConditionExpression": "GSI2PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        invalid = None
        if position is not None:
            kwargs["ExclusiveStartKey"] = _status_start_key(partition, position)
            invalid = InvalidInputError(INVALID_CURSOR)
        response = query(invalid, **kwargs)
        fetched[partition] = response.get("Items", [])
        more[partition] = response.get("LastEvaluatedKey")
    page = _merge_newest_first(fetched, more, limit)
    following = _next_positions(positions, fetched, more, page)
    if not following:
        return [item for _, item in page], None
    return [item for _, item in page], items.encode_cursor({"of": listing, "at": following})


def _status_start_key(partition: str, sort: Any) -> Item:
    """GSI2's ``ExclusiveStartKey`` after the run header whose GSI2SK is ``sort``
    (``<created iso>#<run id>``): the table keys follow from the run id."""
    if not isinstance(sort, str) or "#" not in sort:
        raise InvalidInputError(INVALID_CURSOR)
    run_id = sort.split("#", 1)[1]
    return {**items.run_key(run_id), "GSI2PK": {"S": partition}, "GSI2SK": {"S": sort}}


def _decode_positions(
    cursor: str | None, listing: str, partitions: list[str]
) -> dict[str, str | None]:
    if not cursor:
        return dict.fromkeys(partitions)
    doc = items.decode_cursor(cursor)
    if (
        not isinstance(doc, dict)
        or set(doc) != {"of", "at"}
        or doc["of"] != listing
        or not isinstance(doc["at"], dict)
        or not set(doc["at"]) <= set(partitions)
    ):
        raise InvalidInputError(INVALID_CURSOR)
    for partition, position in doc["at"].items():
        if position is not None:  # validates it; the start key is built again per query
            _status_start_key(partition, position)
    return {p: doc["at"][p] for p in partitions if p in doc["at"]}


def _sort_key(item: Item) -> str:
    return str(item["GSI2SK"]["S"])


def _merge_newest_first(
    fetched: dict[str, list[Item]], more: dict[str, Item | None], limit: int
) -> list[tuple[str, Item]]:
    """The page: the newest ``limit`` items of all partitions, none older than the last
    item of a partition that has more to read."""
    merged = sorted(
        ((partition, item) for partition, found in fetched.items() for item in found),
        key=lambda pair: _sort_key(pair[1]),
        reverse=True,
    )
    bounds = [_sort_key(fetched[p][-1]) for p in fetched if more[p] and fetched[p]]
    if bounds:
        cutoff = max(bounds)
        merged = [pair for pair in merged if _sort_key(pair[1]) >= cutoff]
    return merged[:limit]


def _next_positions(
    positions: dict[str, str | None],
    fetched: dict[str, list[Item]],
    more: dict[str, Item | None],
    page: list[tuple[str, Item]],
) -> dict[str, str | None]:
    """Each partition's position after ``page``; exhausted partitions are left out."""
    following: dict[str, str | None] = {}
    for partition, position in positions.items():
        taken = [item for p, item in page if p == partition]
        left = len(fetched[partition]) - len(taken)
        if left > 0 or more[partition] is not None:
            if taken:
                following[partition] = _sort_key(taken[-1])
            elif fetched[partition]:
                following[partition] = position
            else:  # nothing read but a start key returned: resume from there
                following[partition] = _sort_key(more[partition] or {})
    return following


def count_runs(
    query: Query, table: str, graph_id: str | None, owner: str | None, up_to: int
) -> tuple[dict[str, int], bool]:
    """Runs per status (:meth:`~engine.ports.RunStore.count_runs`), from the indexes alone.

    Without a filter: a ``Select=COUNT`` query of each status's GSI2 shards, which returns
    no items (DynamoDB still reads the index entries it counts: about 4 KB of read capacity
    per 20 runs, as their entries are small). Of one graph (GSI1) or one owner (GSI3): their
    partition's entries, projected to their status. Either way nothing but the index entries
    of the counted runs is read, and reading stops at ``up_to`` runs."""
    counts = dict.fromkeys(STATUSES, 0)
    left = max(1, up_to)
    if graph_id is None and owner is None:
        for status in STATUSES:
            for partition in items.status_partitions(status):
                kwargs: dict[str, Any] = {
                    "TableName": table, "IndexName": "GSI2", "Select": "COUNT",
                    "KeyConditionExpression": "GSI2PK = :pk",
                    "ExpressionAttributeValues": {":pk": {"S": partition}},
                }  # fmt: skip
                while True:
                    if left <= 0:  # the bound is reached: what is left is not read
                        return counts, False
                    response = query(None, Limit=left, **kwargs)
                    counts[status] += int(response.get("Count", 0))
                    left -= int(response.get("Count", 0))
                    if "LastEvaluatedKey" not in response:
                        break
                    kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return counts, True
    index, partition = (
        ("GSI1", items.graph_partition(graph_id)) if graph_id is not None
        else ("GSI3", items.owner_partition(owner or "", "RUNS"))
    )  # fmt: skip
    kwargs = {
        "TableName": table, "IndexName": index, "ProjectionExpression": "#status",
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": f"{index}PK", "#status": "status"},
        "ExpressionAttributeValues": {":pk": {"S": partition}},
    }  # fmt: skip
    if graph_id is not None:
        _add_filters(kwargs, {"owner": owner})
    while True:
        response = query(None, Limit=left, **kwargs)
        for item in response.get("Items", []):
            status = item["status"]["S"]
            counts[status] = counts.get(status, 0) + 1
        left -= int(response.get("ScannedCount", 0))
        if "LastEvaluatedKey" not in response:
            return counts, True
        if left <= 0:
            return counts, False
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
