"""Paged listings over the table's indexes (graphs; runs by graph, status, owner, or all).

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
Position = dict[str, str]
"""Where a query of an index stands: the string keys of the last item it returned."""

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


def all_runs_page(query: Query, table: str, limit: int, cursor: str | None
                  ) -> tuple[list[Item], str | None]:  # fmt: skip
    """Every run, newest first, as a merge of the four status partitions of GSI2.

    Why a merge: a Scan is unordered and reads the whole table (steps included); a single
    "all runs" index partition would take every run's writes, and one partition accepts at
    most 1,000 writes per second, which would cap how fast runs can start. Four queries of
    at most ``limit + 1`` items each read little more than the page.

    The cursor holds each partition's position (the last item taken from it; ``null``:
    nothing taken yet; absent: exhausted). A partition whose query stopped early (the 1 MB
    cap) bounds the page to items no older than the last one it returned, so no unread item
    of it can belong before an item this page returns. A run that changes status while pages
    are being walked moves to another partition and may be listed twice or not at all, as in
    any listing of a changing set.
    """
    limit = max(1, limit)
    positions = _decode_positions(cursor)
    fetched: dict[str, list[Item]] = {}
    more: dict[str, Item | None] = {}
    for status, position in positions.items():
        partition = items.status_partition(status)
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
            kwargs["ExclusiveStartKey"] = items.start_key(position, "GSI2", partition)
            invalid = InvalidInputError(INVALID_CURSOR)
        response = query(invalid, **kwargs)
        fetched[status] = response.get("Items", [])
        more[status] = response.get("LastEvaluatedKey")
    page = _merge_newest_first(fetched, more, limit)
    following = _next_positions(positions, fetched, more, page)
    return [item for _, item in page], items.encode_cursor(following) if following else None


def _decode_positions(cursor: str | None) -> dict[str, Position | None]:
    if not cursor:
        return dict.fromkeys(STATUSES)
    doc = items.decode_cursor(cursor)
    if not isinstance(doc, dict) or not set(doc) <= set(STATUSES):
        raise InvalidInputError(INVALID_CURSOR)
    for status, position in doc.items():
        if position is not None:  # validates it; the start key is built again per query
            items.start_key(position, "GSI2", items.status_partition(status))
    return doc


def _merge_newest_first(
    fetched: dict[str, list[Item]], more: dict[str, Item | None], limit: int
) -> list[tuple[str, Item]]:
    """The page: the newest ``limit`` items of all partitions, none older than the last
    item of a partition that has more to read."""
    merged = sorted(
        ((status, item) for status, found in fetched.items() for item in found),
        key=lambda pair: pair[1]["GSI2SK"]["S"],
        reverse=True,
    )
    bounds = [fetched[s][-1]["GSI2SK"]["S"] for s in fetched if more[s] and fetched[s]]
    if bounds:
        cutoff = max(bounds)
        merged = [pair for pair in merged if pair[1]["GSI2SK"]["S"] >= cutoff]
    return merged[:limit]


def _next_positions(
    positions: dict[str, Position | None],
    fetched: dict[str, list[Item]],
    more: dict[str, Item | None],
    page: list[tuple[str, Item]],
) -> dict[str, Position | None]:
    """Each partition's position after ``page``; exhausted partitions are left out."""
    following: dict[str, Position | None] = {}
    for status, position in positions.items():
        taken = [item for s, item in page if s == status]
        left = len(fetched[status]) - len(taken)
        if left > 0 or more[status] is not None:
            if taken:
                following[status] = items.index_position(taken[-1], "GSI2")
            elif fetched[status]:
                following[status] = position
            else:  # nothing read but a start key returned: resume from there
                following[status] = items.index_position(more[status] or {}, "GSI2")
    return following
