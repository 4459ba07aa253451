"""WebSocket connections and their subscriptions in the DynamoDB store
(functions/aws/notifier.py reads them after each commit). Item shapes are in
:mod:`functions.aws.dynamodb_items`: a connection and its subscriptions under ``CONN#<id>``,
each subscription again under its run (``RUN#<id>``, ``SUB#<connection>``), with a TTL.
"""

from __future__ import annotations

from typing import Any

from engine.errors import NotFoundError
from engine.ports import Connection
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_table import SlotTaken, TableIO


class DynamoConnections(TableIO):
    """WebSocket connections, and which runs each one follows."""

    def save_connection(self, connection: Connection) -> None:
        self._call("put_item", TableName=self.table, Item=items.connection_item(connection))

    def get_connection(self, connection_id: str) -> Connection:
        item = self._get(items.connection_key(connection_id))
        if item is None:
            raise NotFoundError("connection", connection_id)
        return items.connection_from_item(item)

    def delete_connection(self, connection_id: str) -> None:
        deletes: list[dict[str, Any]] = []
        for item in self._query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CONN#{connection_id}"}},
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
        ):
            deletes.append({"DeleteRequest": {"Key": {"PK": item["PK"], "SK": item["SK"]}}})
            sk = item["SK"]["S"]
            if sk.startswith(items.SUB_PREFIX):
                by_run, _ = items.subscription_keys(connection_id, sk[len(items.SUB_PREFIX) :])
                deletes.append({"DeleteRequest": {"Key": by_run}})
        self._batch_write(deletes)

    def subscribe(self, connection_id: str, run_id: str) -> None:
        """Raises NotFoundError("connection", ...) for a connection never saved (or gone)."""
        item = self._get(items.connection_key(connection_id))
        if item is None:
            raise NotFoundError("connection", connection_id)
        by_run, by_connection = items.subscription_items(items.connection_from_item(item), run_id)
        self._batch_write(
            [{"PutRequest": {"Item": by_run}}, {"PutRequest": {"Item": by_connection}}]
        )

    def unsubscribe(self, connection_id: str, run_id: str) -> None:
        keys = items.subscription_keys(connection_id, run_id)
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])

    def record_replay(self, connection_id: str, run_id: str, through: int) -> None:
        by_run, _ = items.subscription_keys(connection_id, run_id)
        try:
            self._call(
                "update_item",
                conflict=SlotTaken(),
                TableName=self.table,
                Key=by_run,
                UpdateExpression="SET replayed_through = :through",
                ConditionExpression="attribute_exists(PK)",  # never revive an unsubscribe
                ExpressionAttributeValues={":through": items.num(through)},
            )
        except SlotTaken:
            return

    def subscribers(self, run_id: str) -> list[Connection]:
        """One query of the run's subscription items, which carry the endpoint. Strongly
        consistent: the notifier reads this after a step's commit, and a subscriber replays
        the log after writing its subscription; an eventually consistent read could miss a
        subscription written just before the commit, and that step would reach its client
        neither live nor by replay (functions/aws/notifier.py)."""
        found = self._query_all(
            ConsistentRead=True,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :sub)",
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{run_id}"},
                ":sub": {"S": items.SUB_PREFIX},
                ":now": items.num(int(self._clock())),
            },
        )
        return [items.subscriber_from_item(item) for item in found]
