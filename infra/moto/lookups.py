"""Two lookups moto repeats on every request, remembered (speed only).

Found by profiling the local stack's moto process under benchmarks/local_load.py (py-spy),
where each was about a twelfth of the process's time:

- every conditional write, and every query with a filter, parses its expression anew
  (``get_filter_expression``: lexing, then building a tree of operations). The stack sends
  the same few expressions all day; a parsed one is kept by its text, its names and its
  values (the values are part of the tree), and evaluated against each item as moto's is.
  A tree is never changed by evaluating it, so one can serve many requests at once.
- DeleteMessage (each entry of DeleteMessageBatch) finds its message by walking the whole
  queue and comparing every message's receipt handles: with a thousand hops waiting, ten
  thousand comparisons for a batch of ten. Here a message is found by its receipt handle,
  noted when a receive gives it one; a handle not noted (one from before a restart, a wrong
  one) takes moto's walk, with moto's answer.

Used by the moto process (infra/moto/process.py); tests/functional/test_moto_local.py checks
the answers are moto's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PARSED_LIMIT = 4096
"""Parsed expressions kept; when full, the memory starts again (the stack has a few dozen)."""


@contextmanager
def remembered_lookups() -> Iterator[None]:
    """Patch moto (this process, inside the block) as described in the module docstring."""
    import moto.dynamodb.models as dynamodb_models
    import moto.dynamodb.models.table as table_models
    from moto.sqs.models import Message, Queue

    parse = dynamodb_models.get_filter_expression
    saved = (parse, table_models.get_filter_expression, Message.mark_received, Queue.delete_message)
    remembered = _remembering(parse)
    dynamodb_models.get_filter_expression = remembered  # type: ignore[attr-defined]
    table_models.get_filter_expression = remembered  # type: ignore[assignment]
    Message.mark_received = _noting_handles(saved[2])  # type: ignore[method-assign]
    Queue.delete_message = _deleting_by_handle(saved[3])  # type: ignore[method-assign]
    try:
        yield
    finally:
        dynamodb_models.get_filter_expression = saved[0]  # type: ignore[attr-defined]
        table_models.get_filter_expression = saved[1]  # type: ignore[assignment]
        Message.mark_received, Queue.delete_message = saved[2], saved[3]  # type: ignore[method-assign]
        _messages_by_handle.clear()


# ---------------------------------------------------------------------------- expressions
def _remembering(parse: Any) -> Any:
    parsed: dict[tuple[Any, ...], Any] = {}

    def get_filter_expression(expr: Any, names: Any, values: Any) -> Any:
        key = (expr, _names_key(names), json.dumps(values, sort_keys=True) if values else "")
        found = parsed.get(key)
        if found is None:
            found = parse(expr, names, values)  # an invalid one raises, and is not kept
            if len(parsed) >= _PARSED_LIMIT:
                parsed.clear()
            parsed[key] = found
        return found

    return get_filter_expression


def _names_key(names: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(names.items())) if names else ()


# ---------------------------------------------------------------------------- receipt handles
_HANDLES_LIMIT = 100_000
_messages_by_handle: dict[str, Any] = {}
"""Receipt handle -> message, for the handles receives gave out and nothing deleted yet."""


def _noting_handles(mark_received: Any) -> Any:
    def noted(message: Any, *args: Any, **kwargs: Any) -> None:
        mark_received(message, *args, **kwargs)
        if len(_messages_by_handle) >= _HANDLES_LIMIT:  # handles of messages never deleted
            _messages_by_handle.clear()  # (dead letters, purges): moto's walk finds them
        _messages_by_handle[message.receipt_handle] = message

    return noted


def _deleting_by_handle(moto_delete: Any) -> Any:
    def delete_message(queue: Any, receipt_handle: str) -> None:
        if receipt_handle in queue.deleted_messages:  # deleted before: SQS accepts it again
            return
        message = _messages_by_handle.get(receipt_handle)
        # ``in`` compares by identity here (messages have no __eq__): a walk in C, not Python
        if message is None or message not in queue._messages:
            moto_delete(queue, receipt_handle)  # moto's walk, and its error if there is none
            return
        queue.pending_messages.discard(message)
        queue.deleted_messages.update(message.all_receipt_handles)
        kept = list(queue._messages)  # a new list, as moto makes: a reader may hold the old
        kept.remove(message)
        queue._messages = kept
        for handle in message.all_receipt_handles:
            _messages_by_handle.pop(handle, None)

    return delete_message
