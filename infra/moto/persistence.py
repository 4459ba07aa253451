"""The local stack's data on disk: moto's DynamoDB items and SQS messages, across restarts.

moto keeps its state in the memory of the process that serves it (infra/moto/process.py).
This module works on that state directly, in that process, through moto's own backends:

- every DynamoDB write (PutItem, UpdateItem, DeleteItem; BatchWriteItem and transactions go
  through them) marks its key dirty; every SQS change marks the queues dirty;
- a frame takes the dirty items and, if they changed, every queue's messages, under the lock
  that every moto operation takes (infra/moto/fidelity.py), so that it is one instant of both
  services, and appends it to a journal as one JSON line, still under the lock;
- a frame is written at the end of every DynamoDB write (a whole transaction, once it has
  committed or undone its writes), before the write is answered and before anyone can read
  it (reads take the lock too), and about every second (:meth:`Persistence.flush`) for the
  queue changes since;
- on start, :meth:`Persistence.restore` folds the journal into moto (items through the
  backend's PutItem, messages as moto's own ``Message`` objects), then compacts the journal.

Messages come back with their id, receive count, timestamps and delay: the worker's delivery
id is the SQS message id, and a redelivered hop recovers a step its crashed first delivery
committed only because the id is the same (engine/service.py, "after_conflict"). A message
that was in flight (received, not deleted) when the stack stopped comes back invisible until
its visibility timeout ends, as SQS would redeliver it, but at most ``redelivery_s`` after
the restart: its consumer died with the stack, and the local stack retries failed deliveries
after that long rather than the queue's visibility timeout (``StackConfig.failed_visibility``).

Files in the data folder::

    state-<g>.json       the compacted state of generation g (written to a temporary name,
                         then renamed: it is whole or absent)
    changes-<g>.jsonl    frames appended since; a line cut short by a crash is ignored
    lock                 held (flock) while a stack uses the folder

A frame holds the items that changed and, when any message changed, all queues' messages,
so the last whole frame alone says what every queue held.

What ``kill -9`` can undo: the queue operations (sends, receives, deletes) made after the last
DynamoDB write and less than a second ago; never a DynamoDB write that was answered, so never
a step anyone could have seen committed. The queues then come back as they were at that
write: a hop whose step is on disk is delivered again with its id and recovers that step
without running it (engine/protocol.py, ``_after_conflict``), and a hop whose send was undone
is sent again by that recovery. The frames are in the operating system's hands when a write
is answered (written, not fsynced): a crash of the machine, not of the stack, can lose more.

Hand-written: moto has no persistence of its own (its recorder replays every request ever
made, and pickling its backends would tie the files to one moto release); this keeps the
files in the services' wire shapes (DynamoDB JSON items, SQS message fields).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("hopgraph.local.persistence")

FLUSH_INTERVAL_S = 1.0
COMPACT_AFTER_BYTES = 64 * 1024 * 1024
"""A journal this long is folded into a new state file (which restarts read quickly)..."""
COMPACT_AFTER_STATES = 4
"""... or, once the state file is larger than a quarter of that, a journal this many times
the state file. A compaction writes every item (O(items), under the lock every write
takes): at a fixed length, a table of n items was written again every ~4,000 writes of a
wide map (its frames carry the step queue's messages), so each write cost O(n) on average
(a map of 100,000 items would rewrite ~60 MB two dozen times). Relative to the state, the
compactions' cost per write stays the same whatever the table's size."""

TableId = tuple[str, str, str]
"""(account, region, table name)"""


class DataFolderInUse(Exception):
    """Another stack holds the data folder."""


class RestoreFailed(Exception):
    """An item of the data folder could not be put back; the message says which."""


# ---------------------------------------------------------------------------- files
@dataclass
class Snapshot:
    """What the files hold, folded: items by table and key, messages by queue."""

    items: dict[TableId, dict[str, dict[str, Any]]] = field(default_factory=dict)
    queues: dict[TableId, list[dict[str, Any]]] = field(default_factory=dict)

    def apply(self, frame: dict[str, Any]) -> None:
        for account, region, table, key, item in frame.get("items", []):
            rows = self.items.setdefault((account, region, table), {})
            if item is None:
                rows.pop(key, None)
            else:
                rows[key] = item
        if "queues" in frame:
            self.queues = {
                (account, region, name): messages
                for account, region, name, messages in frame["queues"]
            }

    def to_frame(self) -> dict[str, Any]:
        items = [
            [*table, key, item] for table, rows in self.items.items() for key, item in rows.items()
        ]
        queues = [[*queue, messages] for queue, messages in self.queues.items()]
        return {"items": items, "queues": queues}

    @property
    def counts(self) -> dict[str, int]:
        return {
            "items": sum(len(rows) for rows in self.items.values()),
            "messages": sum(len(messages) for messages in self.queues.values()),
        }


class Journal:
    """The data folder: one state file and the frames appended after it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.generation = 0
        self.compact_after = COMPACT_AFTER_BYTES
        """The journal's length at which :class:`Persistence` compacts it."""
        self._changes: TextIO | None = None
        self._lock_file: TextIO | None = None

    def lock(self) -> None:
        private_folder(self.folder)
        self._lock_file = open(self.folder / "lock", "w")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataFolderInUse(f"{self.folder} is in use by another local stack") from None

    def reset(self) -> None:
        for path in self._files():
            path.unlink()
        for path in sorted(self._objects().rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()

    def _objects(self) -> Path:
        return self.folder / "objects"

    def keep_object(self, account: str, bucket: str, key: str, data: bytes) -> None:
        """Keep an S3 object as ``objects/<account>/<bucket>/<key>`` (written whole, then
        renamed into place)."""
        path = self._objects() / account / bucket / key
        if ".." in Path(key).parts:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)

    def objects(self) -> Iterator[tuple[str, str, str, bytes]]:
        """(account, bucket, key, bytes) of every object kept."""
        root = self._objects()
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.endswith(".partial"):
                account, bucket, *key = path.relative_to(root).parts
                yield account, bucket, "/".join(key), path.read_bytes()

    def _files(self) -> list[Path]:
        return [*self.folder.glob("state-*.json*"), *self.folder.glob("changes-*.jsonl")]

    def load(self) -> Snapshot:
        snapshot = Snapshot()
        states = sorted(self.folder.glob("state-*.json"), key=_generation)
        if states:
            self.generation = _generation(states[-1])
            snapshot.apply(json.loads(states[-1].read_text()))
        changes = self.folder / f"changes-{self.generation}.jsonl"
        if changes.exists():
            with changes.open() as lines:
                for line in lines:
                    try:
                        frame = json.loads(line)
                    except ValueError:
                        break  # the line a crash cut short, and nothing after it
                    snapshot.apply(frame)
        return snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` as the next generation's state and start its journal."""
        self.close_changes()
        old = self._files()
        self.generation += 1
        state = self.folder / f"state-{self.generation}.json"
        temporary = state.with_suffix(".json.tmp")
        with temporary.open("w") as out:
            # dumps, not dump: dump encodes in Python, chunk by chunk (ten times slower, under
            # the lock every write waits for); dumps in C, the file's text at once
            out.write(json.dumps(snapshot.to_frame(), default=_encode, separators=(",", ":")))
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(state)
        self.compact_after = max(COMPACT_AFTER_BYTES, COMPACT_AFTER_STATES * state.stat().st_size)
        for path in old:
            path.unlink(missing_ok=True)
        self._changes = (self.folder / f"changes-{self.generation}.jsonl").open("a")

    def append(self, frame: dict[str, Any]) -> int:
        """Append one frame; the journal's length after it."""
        assert self._changes is not None, "compact() opens the journal"
        self._changes.write(json.dumps(frame, default=_encode, separators=(",", ":")) + "\n")
        self._changes.flush()  # in the OS's hands: a kill -9 of the stack keeps it
        return self._changes.tell()

    def close_changes(self, sync: bool = False) -> None:
        if self._changes is not None:
            if sync:
                os.fsync(self._changes.fileno())
            self._changes.close()
            self._changes = None

    def close(self) -> None:
        self.close_changes(sync=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def private_folder(folder: Path) -> None:
    """``folder``, created if missing, readable by its owner only (0700), and every file in it
    too (0600): it holds the graphs, the runs' states and the token signing key. A folder
    made by an earlier version, with the umask's 0644 files, is made private here as well."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o600)


def _generation(path: Path) -> int:
    return int(path.name.split("-", 1)[1].split(".", 1)[0])


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):  # a binary message attribute
        return {"__b64__": base64.b64encode(value).decode()}
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(value: Any) -> Any:
    """What :func:`_encode` wrote, back: bytes at any depth (a list's too: a binary set)."""
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# ---------------------------------------------------------------------------- moto state
_MESSAGE_FIELDS = {
    "id": "id",
    "body": "body",
    "attributes": "message_attributes",
    "system_attributes": "system_attributes",
    "sender_id": "sender_id",
    "sent_timestamp": "sent_timestamp",
    "first_receive_timestamp": "approximate_first_receive_timestamp",
    "receive_count": "approximate_receive_count",
    "visible_at": "visible_at",
    "delayed_until": "delayed_until",
    "deduplication_id": "deduplication_id",
    "group_id": "group_id",
    "sequence_number": "sequence_number",
}


def _message_state(message: Any) -> dict[str, Any]:
    return {name: getattr(message, attribute) for name, attribute in _MESSAGE_FIELDS.items()}


def _message(state: dict[str, Any], now_ms: float, redelivery_ms: float) -> Any:
    from moto.sqs.models import Message
    from moto.sqs.utils import generate_receipt_handle

    message = Message(state["id"], state["body"], state.get("system_attributes"))
    for name, attribute in _MESSAGE_FIELDS.items():
        if name in state:
            setattr(message, attribute, _decode(state[name]))
    if message.visible_at > now_ms:  # in flight when the stack stopped: its consumer is gone
        message.visible_at = min(message.visible_at, now_ms + redelivery_ms)
    if message.approximate_receive_count:  # old receipt handles died with the consumers
        message.receipt_handle = generate_receipt_handle()
    return message


def _backends(service: str) -> Iterator[tuple[str, str, Any]]:
    from moto.dynamodb.models import dynamodb_backends
    from moto.sqs.models import sqs_backends

    backends: Any = dynamodb_backends if service == "dynamodb" else sqs_backends
    for account, regions in list(backends.items()):
        for region, backend in list(regions.items()):
            yield account, region, backend


class Persistence:
    """Tracks moto's changes and keeps them in a :class:`Journal` (see the module docstring).

    ``forget``: items whose partition key (a string) it returns True for are not restored
    (the stack's WebSocket connections, which died with its gateway)."""

    def __init__(
        self,
        journal: Journal,
        lock: threading.RLock,
        *,
        redelivery_s: float = 2.0,
        forget: Callable[[str], bool] = lambda partition: False,
    ) -> None:
        self.journal = journal
        self.lock = lock
        self.redelivery_s = redelivery_s
        self.forget = forget
        self._dirty: set[tuple[Any, str, str]] = set()
        self._queues_dirty = False
        self._writing = 0
        """DynamoDB writes under way (a transaction's puts nest in it), under the lock."""
        self._ahead = False
        """Is the journal open, so that each DynamoDB write is written down as it ends?"""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- tracking ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Inside the block, moto's writes mark what they change. Enter it before
        infra/moto/fidelity.py's locks, so that they wrap these marks: a frame then never
        holds a queue change without the item change that came before it."""
        from moto.dynamodb.models import DynamoDBBackend
        from moto.sqs.models import SQSBackend

        patches: dict[tuple[type, str], Callable[[Any], Any]] = {
            (DynamoDBBackend, name): self._track_item
            for name in ("put_item", "update_item", "delete_item")
        }
        patches[(DynamoDBBackend, "transact_write_items")] = self._written_ahead
        for name in ("send_message", "delete_message", "change_message_visibility",
                     "purge_queue"):  # fmt: skip
            patches[(SQSBackend, name)] = self._track_queues
        from moto.s3.models import S3Backend

        patches[(S3Backend, "put_object")] = self._track_object
        patches[(SQSBackend, "receive_message")] = self._track_receives
        originals = {(cls, name): cls.__dict__[name] for cls, name in patches}
        for (cls, name), wrap in patches.items():
            setattr(cls, name, wrap(originals[(cls, name)]))
        try:
            yield
        finally:
            for (cls, name), original in originals.items():
                setattr(cls, name, original)

    def _track_item(self, original: Any) -> Any:
        # put_item(table, item_attrs, ...), update_item(table, key, ...), delete_item(table,
        # key, ...): moto's responses and its transactions pass the second one by position.
        def tracked(backend: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self._writing += 1
                try:
                    return original(backend, table_name, *args, **kwargs)
                finally:
                    key = args[0] if args else kwargs.get("item_attrs", kwargs.get("key"))
                    self._mark(backend, table_name, key)
                    self._write_ended()

        return tracked

    def _written_ahead(self, original: Any) -> Any:
        """A transaction is written down once, whole, when it ends (its puts inside it do not
        each write a frame: a kill between two would leave half of it on disk)."""

        def tracked(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self._writing += 1
                try:
                    return original(*args, **kwargs)
                finally:
                    self._write_ended()

        return tracked

    def _write_ended(self) -> None:
        """Under the lock: the outermost write ends; write its frame before it is answered."""
        self._writing -= 1
        if self._writing == 0 and self._ahead:
            try:
                self._append(self._capture())
            except Exception:  # a full disk: say so, answer the write, the timer tries again
                log.exception("could not write the local stack's data")

    def _mark(self, backend: Any, table_name: str, key: Any) -> None:
        with contextlib.suppress(Exception):  # no such table, no key: nothing was written
            key_json = self._key_json(backend.get_table(table_name), key)
            self._dirty.add((backend, table_name, key_json))

    def _track_queues(self, original: Any) -> Any:
        def tracked(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                try:
                    return original(*args, **kwargs)
                finally:
                    self._queues_dirty = True

        return tracked

    def _track_receives(self, original: Any) -> Any:
        # An empty receive changes nothing (the pollers make one a second per thread when
        # idle); one that moved messages to a dead-letter queue changed the queue's length.
        def tracked(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                before = len(backend.get_queue(queue_name)._messages)
                received = original(backend, queue_name, *args, **kwargs)
                if received or len(backend.get_queue(queue_name)._messages) != before:
                    self._queues_dirty = True
                return received

        return tracked

    def _track_object(self, original: Any) -> Any:
        # S3 objects (large state values, engine/blobs.py) are immutable and written before
        # the items that point to them: each is kept as a file as soon as it is put, so a
        # frame never names a value the folder does not have.
        def tracked(backend: Any, bucket_name: str, key_name: str, value: bytes,
                    *args: Any, **kwargs: Any) -> Any:  # fmt: skip
            found = original(backend, bucket_name, key_name, value, *args, **kwargs)
            self.journal.keep_object(backend.account_id, bucket_name, key_name, bytes(value))
            return found

        return tracked

    # -- frames ------------------------------------------------------------------------------
    def _capture(self) -> dict[str, Any] | None:
        """The changes since the last capture, as a frame; None if there are none."""
        with self.lock:
            dirty, self._dirty = self._dirty, set()
            queues_dirty, self._queues_dirty = self._queues_dirty, False
            if not dirty and not queues_dirty:
                return None
            try:
                frame: dict[str, Any] = {"items": [self._item_row(*entry) for entry in dirty]}
                if queues_dirty:
                    frame["queues"] = self._queue_rows()
            except BaseException:  # taken again by the next frame
                self._dirty |= dirty
                self._queues_dirty |= queues_dirty
                raise
        return frame

    @staticmethod
    def _item_row(backend: Any, table_name: str, key_json: str) -> list[Any]:
        try:
            item = backend.get_item(table_name, json.loads(key_json))
        except Exception:  # the table is gone
            item = None
        attributes = None if item is None else item.to_json()["Attributes"]
        return [backend.account_id, backend.region_name, table_name, key_json, attributes]

    @staticmethod
    def _queue_rows() -> list[list[Any]]:
        return [
            [account, region, name, [_message_state(m) for m in queue._messages]]
            for account, region, backend in _backends("sqs")
            for name, queue in backend.queues.items()
        ]

    def _full_snapshot(self) -> Snapshot:
        snapshot = Snapshot()
        with self.lock:
            for account, region, backend in _backends("dynamodb"):
                for name, table in backend.tables.items():
                    rows = snapshot.items.setdefault((account, region, name), {})
                    for item in table.all_items():
                        attributes = item.to_json()["Attributes"]
                        rows[self._key_json(table, attributes)] = attributes
            snapshot.apply({"queues": self._queue_rows()})
            self._dirty.clear()
            self._queues_dirty = False
        return snapshot

    @staticmethod
    def _key_json(table: Any, attributes: dict[str, Any]) -> str:
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return json.dumps({n: attributes[n] for n in names}, sort_keys=True)

    # -- restore, flush, stop ----------------------------------------------------------------
    def restore(self) -> dict[str, int]:
        """Put the journal's items and messages into moto (whose tables and queues exist by
        now), compact the journal, and start flushing every second. What was restored."""
        snapshot = self.journal.load()
        restored = {"items": 0, "messages": 0, "skipped": 0}
        with self.lock:
            for (account, region, table), rows in snapshot.items.items():
                for key, item in rows.items():
                    try:
                        restored[self._restore_item(account, region, table, item)] += 1
                    except Exception as exc:  # never compact a folder without this item
                        raise RestoreFailed(
                            f"cannot bring back the item {key} of {table} in {self.journal.folder}"
                            f" ({type(exc).__name__}: {exc}); the folder is left as it was"
                        ) from exc
            now_ms = time.time() * 1000
            for (account, region, name), messages in snapshot.queues.items():
                queue = _queue(account, region, name)
                if queue is None:
                    restored["skipped"] += len(messages)
                    continue
                queue._messages.extend(
                    _message(m, now_ms, self.redelivery_s * 1000) for m in messages
                )
                restored["messages"] += len(messages)
            restored["objects"] = self._restore_objects()
        with self.lock:
            self.journal.compact(self._full_snapshot())
            self._ahead = True
        self._thread = threading.Thread(target=self._flush_loop, name="moto-persistence",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return restored

    def _restore_objects(self) -> int:
        """Put the kept S3 objects back into their buckets (which exist by now); an object of
        a bucket the template no longer declares is left out."""
        from moto.s3.models import s3_backends

        count = 0
        for account, bucket, key, data in self.journal.objects():
            backend = s3_backends[account]["global"]
            if bucket in backend.buckets:
                backend.put_object(bucket, key, data)
                count += 1
        return count

    def _restore_item(self, account: str, region: str, table: str, item: dict[str, Any]) -> str:
        from moto.dynamodb.exceptions import ResourceNotFoundException
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[account][region]
        try:
            hash_key = backend.get_table(table).hash_key_attr
        except ResourceNotFoundException:  # the template no longer declares the table
            return "skipped"
        if self.forget(str(next(iter(item[hash_key].values())))):
            return "skipped"
        # binary values (a step's compressed state) are written as {"__b64__": ...}
        backend.put_item(table, _decode(item))
        return "items"

    def flush(self) -> None:
        """Write the changes not written yet (the queues' since the last DynamoDB write)."""
        with self.lock:  # frames go to the journal in the order they were taken
            self._append(self._capture())

    def _append(self, frame: dict[str, Any] | None) -> None:
        if frame is not None and self.journal.append(frame) > self.journal.compact_after:
            self.journal.compact(self._full_snapshot())

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except Exception:  # a full disk: say so, keep serving, try again
                log.exception("could not write the local stack's data")

    def stop(self) -> None:
        """Stop the timer and write the last changes (a clean stop loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self.flush()
        with self.lock:
            self._ahead = False
            self.journal.close()


def _queue(account: str, region: str, name: str) -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends[account][region].queues.get(name)
