"""The batcher: queued webhook events → the raw zone, exactly once, through `RawBatchWriter`.

A tenant/provider's waiting events are flushed when `max_records` wait or the oldest has waited
`max_age_seconds`. A flush has three steps, each safe to repeat:

1. claim (one transaction): a `batches` row (id, flush time) and up to `max_records` waiting rows
   marked with its id (`FOR UPDATE SKIP LOCKED`, so batchers never share a row). From here the
   batch's content and its files' names are fixed.
2. publish (holding the batch row's lock): the rows, in id order, go through `RawBatchWriter` with
   the batch's flush time as clock and `publish_once` with the batch id as sequence number, so the
   same batch always gives the same bytes under the same names, and a name already holding them
   is left alone.
3. complete (same transaction as the lock): delete the rows and the batch, add to `flushed`.

A batcher killed between 2 and 3 loses its lock with its connection; the next batcher picks the
batch up (`FOR UPDATE SKIP LOCKED` over `batches`), republishes, finds every file already there
and completes it: every acknowledged event is in the raw zone exactly once. With SQS, each step
first drains SQS into the queue table (`sqs_queue.drain`).
"""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import orjson
import psycopg

from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.webhooks.pg_queue import ensure_schema
from cdp_ingest.webhooks.sqs_queue import drain
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE, publish_once

log = logging.getLogger("cdp.webhooks.batcher")

DUE_SQL = """
SELECT tenant, provider, count(*), min(received_at) FROM cdp_webhooks.queue
WHERE batch_id IS NULL GROUP BY tenant, provider ORDER BY tenant, provider
"""
CLAIM_SQL = """
UPDATE cdp_webhooks.queue SET batch_id = %(batch)s WHERE id IN (
    SELECT id FROM cdp_webhooks.queue WHERE batch_id IS NULL AND tenant = %(tenant)s AND provider = %(provider)s
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
"""


class Batcher:
    def __init__(
        self,
        url: str,
        lake,
        registry: SchemaRegistry | None = None,
        max_records: int = MAX_RECORDS_PER_FILE,
        max_age_seconds: float = 300.0,
        dedup_hours: float = 72.0,
        sqs=None,
        sqs_queue_url: str | None = None,
    ):
        self.url, self.lake, self.registry = url, lake, registry or SchemaRegistry.configured()
        self.max_records = min(max_records, MAX_RECORDS_PER_FILE)
        self.max_age, self.dedup_hours = timedelta(seconds=max_age_seconds), dedup_hours
        self.sqs, self.sqs_queue_url = sqs, sqs_queue_url
        self.conn: psycopg.Connection | None = None
        self._pruned = 0.0

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            ensure_schema(self.url)
            self.conn = psycopg.connect(self.url, autocommit=True)
        return self.conn

    # 1. claim --------------------------------------------------------------------------------
    def claim_due(self, now: datetime | None = None) -> list[int]:
        """Claim a batch for every tenant/provider whose waiting events are due; returns batch ids."""
        conn, now = self.connect(), now or datetime.now(UTC)
        claimed = []
        for tenant, provider, waiting, oldest in conn.execute(DUE_SQL).fetchall():
            while waiting >= self.max_records or (waiting and oldest <= now - self.max_age):
                batch = self.claim(tenant, provider, now)
                if batch is None:
                    break
                claimed.append(batch)
                waiting -= self.max_records
        return claimed

    def claim(self, tenant: str, provider: str, now: datetime) -> int | None:
        conn = self.connect()
        with conn.transaction():
            batch = conn.execute(
                "INSERT INTO cdp_webhooks.batches (tenant, provider, created_at) VALUES (%s, %s, %s) RETURNING id",
                (tenant, provider, now),
            ).fetchone()[0]
            rows = conn.execute(
                CLAIM_SQL, {"batch": batch, "tenant": tenant, "provider": provider, "limit": self.max_records}
            ).rowcount
            if rows == 0:
                conn.execute("DELETE FROM cdp_webhooks.batches WHERE id = %s", (batch,))
                return None
        return batch

    # 2 + 3. publish and complete -------------------------------------------------------------
    def flush_claimed(self) -> int:
        """Publish and complete every batch no other batcher holds (own claims and orphans)."""
        conn, flushed = self.connect(), 0
        while True:
            with conn.transaction():
                batch = conn.execute(
                    "SELECT id, tenant, provider, created_at FROM cdp_webhooks.batches "
                    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                ).fetchone()
                if batch is None:
                    return flushed
                writer = self._publish(conn, *batch)
                self._complete(conn, batch[0], batch[1], batch[2], writer)
            flushed += 1

    def publish(self, batch: int) -> list[str]:
        """Step 2 alone: publish a claimed batch without completing it (what a crash right after the
        write leaves behind); returns the keys written."""
        conn = self.connect()
        with conn.transaction():
            row = conn.execute(
                "SELECT id, tenant, provider, created_at FROM cdp_webhooks.batches WHERE id = %s FOR UPDATE", (batch,)
            ).fetchone()
            return self._publish(conn, *row).files

    def _publish(self, conn, batch: int, tenant: str, provider: str, created_at: datetime) -> RawBatchWriter:
        writer = RawBatchWriter(
            self.lake,
            self.registry,
            tenant,
            provider,
            source="webhook",
            max_records=self.max_records,
            clock=lambda: created_at,
            publish=partial(publish_once, first_seq=batch),
        )
        rows = conn.execute(
            "SELECT stream, payload, rule, reason, received_at FROM cdp_webhooks.queue WHERE batch_id = %s ORDER BY id",
            (batch,),
        )
        for stream, payload, rule, reason, received_at in rows:
            first_seen = received_at.astimezone(UTC).isoformat(timespec="seconds")
            if rule is None:
                writer.add(stream, orjson.loads(payload), first_seen=first_seen)
            else:
                writer.dead_letter(orjson.loads(payload), rule, reason, stream, first_seen)
        writer.flush()
        return writer

    def _complete(self, conn, batch: int, tenant: str, provider: str, writer: RawBatchWriter) -> None:
        landed, dead, suppressed = sum(writer.landed.values()), writer.dead_lettered, sum(writer.suppressed.values())
        conn.execute("DELETE FROM cdp_webhooks.queue WHERE batch_id = %s", (batch,))
        conn.execute("DELETE FROM cdp_webhooks.batches WHERE id = %s", (batch,))
        conn.execute(
            "INSERT INTO cdp_webhooks.flushed AS f (tenant, provider, landed, dead_lettered, suppressed) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, provider) DO UPDATE SET "
            "landed = f.landed + excluded.landed, dead_lettered = f.dead_lettered + excluded.dead_lettered, "
            "suppressed = f.suppressed + excluded.suppressed",
            (tenant, provider, landed, dead, suppressed),
        )
        log.info(
            "batch %s: %s/%s landed %s, dead-lettered %s, suppressed %s",
            batch,
            tenant,
            provider,
            landed,
            dead,
            suppressed,
        )

    # the loop --------------------------------------------------------------------------------
    def prune_seen(self) -> int:
        """Forget event ids older than the dedup window."""
        return (
            self.connect()
            .execute(
                "DELETE FROM cdp_webhooks.seen WHERE received_at < now() - make_interval(secs => %s)",
                (self.dedup_hours * 3600,),
            )
            .rowcount
        )

    def step(self) -> int:
        """One round: drain SQS, claim what is due, flush every unheld batch; returns batches flushed."""
        if self.sqs is not None:
            drain(self.sqs, self.sqs_queue_url, self.connect())
        self.claim_due()
        flushed = self.flush_claimed()
        if time.monotonic() - self._pruned > 600:
            self.prune_seen()
            self._pruned = time.monotonic()
        return flushed

    def run(self, poll_seconds: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # a lost database or lake: nothing was completed, so the next step retries
                log.exception("batcher step failed; retrying")
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            stop.wait(poll_seconds)
