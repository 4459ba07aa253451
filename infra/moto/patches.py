"""Every moto internal the moto layer replaces, by whom, and why: the index of the patches.

moto is pinned to one exact version (pyproject.toml) because these patches replace its private
functions and call them back by position. Upgrading moto is a deliberate change:
tests/unit/test_moto_pin.py fails, naming each patched function that is gone or whose
parameters changed, and tests/functional/test_moto_local.py (test_moto_queries.py for
Query) compares each patched answer with moto's own, byte for byte, to say what else broke.

``params`` are the replaced function's parameter names at the pinned version (the patches pass
arguments by position); None where the patch only wraps it with a lock or a mark, passing every
argument on as it came.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

MOTO_VERSION = "5.2.6"
"""The version every patch was checked against (pyproject.toml pins the same)."""


@dataclass(frozen=True)
class Patch:
    target: str
    """``module:attribute.path`` of the moto function replaced."""
    by: str
    """The hopgraph function (``infra/moto/...``) that replaces or wraps it."""
    why: str
    params: tuple[str, ...] | None = None

    def resolve(self) -> Any:
        module, path = self.target.split(":")
        found: Any = importlib.import_module(module)
        for name in path.split("."):
            found = getattr(found, name)
        return found.fget if isinstance(found, property) else found

    def current_params(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.resolve()).parameters)


_LOCKED = "one lock around every moto write, so a transaction is atomic across threads"
_TRACKED = "marks what it changed, for the data folder's next frame"

PATCHES: tuple[Patch, ...] = (
    # fidelity.py: DynamoDB's and SQS's per-request atomicity across threads
    *(
        Patch(
            f"moto.dynamodb.models:DynamoDBBackend.{name}",
            "fidelity.serialize_dynamodb_writes",
            _LOCKED,
        )
        for name in (
            "put_item",
            "update_item",
            "delete_item",
            "transact_write_items",
            "get_item",
            "query",
        )
    ),
    Patch(
        "moto.sqs.models:SQSBackend.receive_message",
        "fidelity._receive_in_passes",
        "takes the lock per pass over the queue, never while it long-polls",
    ),
    Patch(
        "moto.sqs.models:SQSBackend.send_message_batch",
        "fidelity._keeping_system_attributes",
        "moto drops each entry's MessageSystemAttributes (the trace header Lambda reads)",
        ("self", "queue_name", "entries"),
    ),
    Patch(
        "moto.sqs.models:SQSBackend.send_message",
        "fidelity._with_batch_entry_attributes",
        "hands each batch entry's system attributes to the send that stores it",
    ),
    # persistence.py: the data folder
    *(
        Patch(
            f"moto.dynamodb.models:DynamoDBBackend.{name}",
            "Persistence._track_item",
            _TRACKED,
            ("self", "table_name"),
        )
        for name in ("put_item", "update_item", "delete_item")
    ),
    *(
        Patch(f"moto.sqs.models:SQSBackend.{name}", "Persistence._track_queues", _TRACKED)
        for name in ("send_message", "delete_message", "change_message_visibility", "purge_queue")
    ),
    Patch(
        "moto.sqs.models:SQSBackend.receive_message",
        "Persistence._track_receives",
        "a receive changes the messages' receive counts and visibility",
        ("self", "queue_name"),
    ),
    # speedups.py: costs that grow with the data (speed only)
    Patch(
        "moto.dynamodb.models.table:Table.all_items",
        "speedups._all_items_of",
        "a Query sorted every item of the table; it gets its partition only",
        ("self",),
    ),
    Patch(
        "moto.dynamodb.models.table:Table.query",
        "speedups._query_of",
        "notes the partition and sort key condition that all_items then applies",
        (
            "self",
            "hash_key",
            "range_comparison",
            "range_objs",
            "limit",
            "exclusive_start_key",
            "scan_index_forward",
            "projection_expressions",
            "index_name",
        ),
    ),
    Patch(
        "moto.dynamodb.models.table:Table.__init__",
        "speedups._sorted_partitions_of",
        "its partitions are dicts; a sorted one keeps its sort keys in order for Query",
    ),
    Patch(
        "moto.sqs.models:SQSBackend.is_message_valid_based_on_retention_period",
        "speedups.faster_moto",
        "computes every queue attribute per message; nothing here "
        "lives for the 4 days of retention",
    ),
    Patch(
        "moto.backends:list_of_moto_modules",
        "speedups.faster_moto_server",
        "lists moto's package folder on every request",
        (),
    ),
    Patch(
        "moto.sqs.models:unix_time",
        "speedups._unix_time",
        "reads the clock through datetime per message",
        ("dt",),
    ),
    Patch(
        "moto.sqs.models:unix_time_millis",
        "speedups._unix_time_millis",
        "reads the clock through datetime per message",
        ("dt",),
    ),
    Patch(
        "moto.sqs.models:Queue.attributes",
        "speedups._attributes_of",
        "scans every message to read ContentBasedDeduplication on a standard queue",
        ("self",),
    ),
    Patch(
        "moto.sqs.models:SQSBackend.send_message",
        "speedups._send_message_of",
        "reads the queue's attributes (all its messages) per send",
    ),
    Patch(
        "moto.core.responses:method_names_from_class",
        "speedups.faster_moto_server",
        "inspects the response class's methods on every request (remembered)",
        ("clazz",),
    ),
    Patch(
        "moto.core.serialize:BaseJSONSerializer._serialize_type_structure",
        "speedups._attribute_values_as_they_are",
        "serializes each DynamoDB attribute value member by member; its wire form is kept",
        ("self", "serialized", "value", "shape", "key"),
    ),
    Patch(
        "moto.utilities.aws_headers:gen_amzn_requestid_long",
        "speedups._request_id",
        "draws a request id one random.choice at a time",
        ("headerdict",),
    ),
    Patch(
        "moto.core.responses:gen_amzn_requestid_long",
        "speedups._request_id",
        "the same function, imported by name",
        ("headerdict",),
    ),
    Patch(
        "moto.sqs.models:Queue.delete_message",
        "speedups._delete_message",
        "walks the queue twice, listing every handle per message",
        ("self", "receipt_handle"),
    ),
    Patch(
        "moto.dynamodb.models.dynamo_type:Item.__init__",
        "speedups._new_item",
        "re-sizes every attribute set before each one (quadratic) to check 400 KB",
        ("self", "hash_key", "range_key", "attrs"),
    ),
    Patch(
        "moto.dynamodb.models:DynamoDBBackend.transact_write_items",
        "speedups.transactions_undo_their_own_writes",
        "deep-copies every table a transaction touches, to undo a cancelled one",
        ("self", "transact_items"),
    ),
    # lookups.py: remembered lookups (speed only)
    Patch(
        "moto.dynamodb.models:get_filter_expression",
        "lookups.remembered_lookups",
        "parses the same condition expression on every request",
        ("expr", "names", "values"),
    ),
    Patch(
        "moto.dynamodb.models.table:get_filter_expression",
        "lookups.remembered_lookups",
        "the same function, imported by name",
        ("expr", "names", "values"),
    ),
    Patch(
        "moto.sqs.models:Message.mark_received",
        "lookups._noting_handles",
        "notes each receipt handle, so a delete finds its message directly",
        ("self", "visibility_timeout"),
    ),
    Patch(
        "moto.sqs.models:Queue.add_message",
        "dead_letters.dead_letters_marked",
        "marks a message moved to a dead-letter queue with DeadLetterQueueSourceArn, as SQS does",
        ("self", "message"),
    ),
    Patch(
        "moto.sqs.responses:SQSResponse.receive_message",
        "dead_letters.dead_letters_marked",
        "returns DeadLetterQueueSourceArn, which moto's response leaves out",
        ("self",),
    ),
    Patch(
        "moto.sqs.models:SQSBackend.receive_message",
        "fair_queues.fair_queues",
        "delivers a standard queue's messages in sending order; SQS delivers quiet tenants' "
        "(MessageGroupId) messages before a noisy tenant's",
    ),
)
