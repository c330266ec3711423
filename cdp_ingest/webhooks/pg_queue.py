"""The default webhook queue: tables in the platform's PostgreSQL (schema `cdp_webhooks`).

- `seen`: one row per (tenant, provider, event_id) for `CDP_WEBHOOK_DEDUP_HOURS`. Its primary key
  is the deduplication: queue rows leave at flush, but providers retry for days (Shopify 48 h,
  Stripe 3 days), so the ids outlive them. An event with a `body_key` (Shopify: its id is an
  unsigned header, so the body's hash is kept too) claims both keys and is new only when neither
  was seen, so a captured delivery replayed under a new id is still a duplicate.
- `queue`: acknowledged events waiting for the batcher; `batch_id` is set once a batcher claims them.
- `batches`: claimed batches; a batch's rows and flush time are fixed before its files are written.
- `flushed`: running totals of events published per tenant/provider (for the metrics).

The receiver writes through `GroupCommitQueue`: concurrent requests are gathered into one
`INSERT … ON CONFLICT DO NOTHING` statement (one commit), and each request is answered only after
that commit, so an acknowledged event is durable and the database sees one commit per group.
"""

import asyncio
import logging
from datetime import datetime
from typing import NamedTuple

import orjson
import psycopg

log = logging.getLogger("cdp.webhooks")

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS cdp_webhooks;
CREATE TABLE IF NOT EXISTS cdp_webhooks.seen (
    tenant text NOT NULL, provider text NOT NULL, event_id text NOT NULL, received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, provider, event_id));
CREATE INDEX IF NOT EXISTS seen_received_at ON cdp_webhooks.seen (received_at);
CREATE TABLE IF NOT EXISTS cdp_webhooks.batches (
    id bigserial PRIMARY KEY, tenant text NOT NULL, provider text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS cdp_webhooks.queue (
    id bigserial PRIMARY KEY, tenant text NOT NULL, provider text NOT NULL, event_id text NOT NULL,
    stream text, payload text NOT NULL, rule text, reason text, received_at timestamptz NOT NULL,
    batch_id bigint);  -- a cdp_webhooks.batches id (no foreign key: its check would run on every insert)
CREATE INDEX IF NOT EXISTS queue_waiting ON cdp_webhooks.queue (tenant, provider, id) WHERE batch_id IS NULL;
CREATE INDEX IF NOT EXISTS queue_batch ON cdp_webhooks.queue (batch_id) WHERE batch_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS cdp_webhooks.flushed (
    tenant text NOT NULL, provider text NOT NULL, landed bigint NOT NULL DEFAULT 0,
    dead_lettered bigint NOT NULL DEFAULT 0, PRIMARY KEY (tenant, provider));
ALTER TABLE cdp_webhooks.flushed ADD COLUMN IF NOT EXISTS suppressed bigint NOT NULL DEFAULT 0;
"""

# Events none of whose keys (event_id, and body_key when there is one) was seen enter `seen` and
# `queue` in one statement. The group travels as one JSON array of rows (serialised by orjson),
# far cheaper than a parameter per column.
INSERT_SQL = """
WITH incoming AS (
    SELECT n, e->>0 AS tenant, e->>1 AS provider, e->>2 AS event_id, e->>3 AS stream, e->>4 AS payload,
           e->>5 AS rule, e->>6 AS reason, (e->>7)::timestamptz AS received_at, e->>8 AS body_key
    FROM json_array_elements(%s::json) WITH ORDINALITY AS t(e, n)
), claims AS (
    SELECT n, tenant, provider, event_id AS seen_key, received_at FROM incoming
    UNION ALL
    SELECT n, tenant, provider, body_key, received_at FROM incoming WHERE body_key IS NOT NULL
), fresh AS (
    INSERT INTO cdp_webhooks.seen (tenant, provider, event_id, received_at)
    SELECT tenant, provider, seen_key, received_at FROM claims
    ON CONFLICT DO NOTHING
    RETURNING tenant, provider, event_id
), new_events AS (
    SELECT c.n FROM claims c
    LEFT JOIN fresh f ON f.tenant = c.tenant AND f.provider = c.provider AND f.event_id = c.seen_key
    GROUP BY c.n HAVING bool_and(f.event_id IS NOT NULL)
)
INSERT INTO cdp_webhooks.queue (tenant, provider, event_id, stream, payload, rule, reason, received_at)
SELECT i.tenant, i.provider, i.event_id, i.stream, i.payload, i.rule, i.reason, i.received_at
FROM incoming i JOIN new_events USING (n)
RETURNING tenant, provider, event_id
"""


class QueuedEvent(NamedTuple):
    tenant: str
    provider: str
    event_id: str
    stream: str | None
    payload: str  # JSON text of the record (or of the dead letter's payload)
    rule: str | None
    reason: str | None
    received_at: datetime
    body_key: str | None = None  # a second de-duplication key (the signed body's hash)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tenant, self.provider, self.event_id

    @property
    def seen_keys(self) -> set[tuple[str, str, str]]:
        keys = {self.key}
        if self.body_key is not None:
            keys.add((self.tenant, self.provider, self.body_key))
        return keys


class QueueUnavailable(RuntimeError):
    """The event could not be made durable: the request must fail (503) so the provider retries."""


def ensure_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('cdp_webhooks schema'))")
        conn.execute(SCHEMA_SQL)
        conn.execute("SELECT pg_advisory_unlock(hashtext('cdp_webhooks schema'))")


def unique_events(events: list[QueuedEvent]) -> dict[tuple[str, str, str], QueuedEvent]:
    """By key, the events that share no key with an earlier one (a retry or a replay can arrive
    while the original is in the same group)."""
    first: dict[tuple[str, str, str], QueuedEvent] = {}
    claimed: set[tuple[str, str, str]] = set()
    for event in events:
        if claimed.isdisjoint(event.seen_keys):
            first[event.key] = event
            claimed |= event.seen_keys
    return first


def insert_params(events: list[QueuedEvent]) -> tuple[str]:
    return (orjson.dumps([list(event) for event in events]).decode(),)


def insert_events(conn: psycopg.Connection, events: list[QueuedEvent]) -> set[tuple[str, str, str]]:
    """Insert the new events (in the caller's transaction); returns the keys that were new."""
    rows = conn.execute(INSERT_SQL, insert_params(list(unique_events(events).values()))).fetchall()
    return {tuple(row) for row in rows}


class GroupCommitQueue:
    """Durable enqueue for the receiver: `put` returns True for a new event, False for a duplicate.

    Writer tasks (one PostgreSQL connection each) take every request waiting, insert them in one
    statement and then answer them all; while one group commits, the next one gathers.
    """

    def __init__(self, url: str, connections: int = 2, max_group: int = 1_000):
        self.url, self.connections, self.max_group = url, connections, max_group
        self._pending: list[tuple[QueuedEvent, asyncio.Future]] = []
        self._arrived = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self.healthy = True

    async def start(self) -> None:
        await asyncio.to_thread(ensure_schema, self.url)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.connections)]

    async def close(self) -> None:
        """Let the writers finish what is queued, then stop them."""
        while self._pending:
            await asyncio.sleep(0.01)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def put(self, event: QueuedEvent) -> bool:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        self._arrived.set()
        return await done

    async def depth_and_flushed(self) -> tuple[int, list[tuple]]:
        """Events waiting in the queue, and (tenant, provider, landed, dead_lettered, suppressed) totals."""
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            depth = (await (await conn.execute("SELECT count(*) FROM cdp_webhooks.queue")).fetchone())[0]
            totals = await (
                await conn.execute(
                    "SELECT tenant, provider, landed, dead_lettered, suppressed FROM cdp_webhooks.flushed ORDER BY 1, 2"
                )
            ).fetchall()
        return depth, totals

    async def _work(self) -> None:
        conn: psycopg.AsyncConnection | None = None
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            group, self._pending[:] = self._pending[: self.max_group], self._pending[self.max_group :]
            events = [event for event, _ in group]
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                first = unique_events(events)
                cursor = await conn.execute(INSERT_SQL, insert_params(list(first.values())))
                new = {tuple(row) for row in await cursor.fetchall()}
                self.healthy = True
            except Exception as error:  # whatever failed, this group is not durable: 503, and carry on
                log.warning("webhook queue write failed: %s", type(error).__name__)
                self.healthy = False
                if conn is not None:
                    await conn.close()
                conn = None
                for _, done in group:
                    if not done.done():
                        done.set_exception(QueueUnavailable("the queue could not be written"))
                continue
            for event, done in group:
                if not done.done():
                    done.set_result(event.key in new and first.get(event.key) is event)
