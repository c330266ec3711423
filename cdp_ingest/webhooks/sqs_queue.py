"""The SQS variant of the webhook queue (`CDP_WEBHOOK_SQS_QUEUE_URL`).

The receiver acknowledges once `SendMessage` has succeeded (SQS has stored the message). The
batcher drains the queue into the PostgreSQL queue table with the same insert as the receiver's
PostgreSQL path, and deletes the messages only after that commit. Deduplication is the `seen`
record in PostgreSQL, written at drain time: SQS standard queues deliver at least once and a FIFO
queue forgets ids after 5 minutes while providers retry for days, so only a durable record keyed by
(tenant, provider, event_id), checked where events enter the batch, catches both a provider's retry
and SQS's own redelivery (a message drained but not yet deleted when the batcher died).
"""

import asyncio
from datetime import datetime

import boto3
import orjson

from cdp_ingest.webhooks.pg_queue import QueuedEvent, QueueUnavailable, insert_events


def sqs_client(endpoint_url: str | None):
    return boto3.client("sqs", endpoint_url=endpoint_url)


def encode(event: QueuedEvent) -> str:
    return orjson.dumps(event._asdict()).decode()


def decode(body: str) -> QueuedEvent:
    fields = orjson.loads(body)
    fields["received_at"] = datetime.fromisoformat(fields["received_at"])
    return QueuedEvent(**fields)


class SqsQueue:
    """Durable enqueue through SQS; duplicates are recognised later, when the batcher drains."""

    def __init__(self, queue_url: str, endpoint_url: str | None):
        self.queue_url, self.client = queue_url, sqs_client(endpoint_url)
        self.healthy = True

    async def start(self) -> None:
        await asyncio.to_thread(self.client.get_queue_attributes, QueueUrl=self.queue_url)

    async def close(self) -> None:
        """Nothing is held back: every put has finished before its request was answered."""

    async def put(self, event: QueuedEvent) -> bool:
        try:
            await asyncio.to_thread(self.client.send_message, QueueUrl=self.queue_url, MessageBody=encode(event))
        except Exception as error:  # botocore raises many types; every one means "not stored"
            self.healthy = False
            raise QueueUnavailable("the SQS queue could not be written") from error
        self.healthy = True
        return True


def drain(client, queue_url: str, conn, max_messages: int = 2_000, visibility_seconds: int = 60) -> int:
    """Move up to `max_messages` messages from SQS into the PostgreSQL queue; returns how many."""
    moved = 0
    while moved < max_messages:
        messages = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=visibility_seconds
        ).get("Messages", [])
        if not messages:
            break
        with conn.transaction():
            insert_events(conn, [decode(message["Body"]) for message in messages])
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]} for index, message in enumerate(messages)
            ],
        )
        moved += len(messages)
    return moved
