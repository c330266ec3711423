"""What the platform remembers about each source, in its PostgreSQL (schema `cdp_sources`).

- `bookmarks`: the last STATE the target echoed for a tenant's source, i.e. the last one whose
  records were all durable in the lake; the next run passes it to the tap as `--state`.
- `pauses`: a source stopped after an authentication failure, with the reason and a salted hash of
  its config at the time; it stays paused until the config hashes differently.

A run holds a session-level advisory lock on (tenant, source) for its whole length, so runs of one
source never overlap, and a crashed run's lock goes with its connection.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS cdp_sources;
CREATE TABLE IF NOT EXISTS cdp_sources.bookmarks (
    tenant text NOT NULL, source text NOT NULL, state jsonb NOT NULL, updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, source));
CREATE TABLE IF NOT EXISTS cdp_sources.pauses (
    tenant text NOT NULL, source text NOT NULL, reason text NOT NULL, fingerprint text NOT NULL,
    salt bytea NOT NULL, paused_at timestamptz NOT NULL, PRIMARY KEY (tenant, source));
"""
# Several processes may create the schema at once; one transaction-level lock orders them.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('cdp_sources:schema', 0))"
RUN_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('cdp_sources:run:' || %s || '/' || %s, 0))"


class SourceBusy(RuntimeError):
    """Another run of the same source holds its lock."""


@dataclass
class Pause:
    reason: str
    fingerprint: str
    salt: bytes


class SourceSession:
    """One run's hold on a source: its lock, its bookmark and its pause."""

    def __init__(self, conn: psycopg.Connection, tenant: str, source: str):
        self.conn, self.tenant, self.source = conn, tenant, source

    def bookmark(self) -> dict | None:
        row = self.conn.execute(
            "SELECT state FROM cdp_sources.bookmarks WHERE tenant = %s AND source = %s", (self.tenant, self.source)
        ).fetchone()
        return row[0] if row else None

    def save_bookmark(self, state: dict) -> None:
        self.conn.execute(
            """INSERT INTO cdp_sources.bookmarks (tenant, source, state, updated_at) VALUES (%s, %s, %s, now())
               ON CONFLICT (tenant, source) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at""",
            (self.tenant, self.source, Jsonb(state)),
        )

    def pause(self) -> Pause | None:
        row = self.conn.execute(
            "SELECT reason, fingerprint, salt FROM cdp_sources.pauses WHERE tenant = %s AND source = %s",
            (self.tenant, self.source),
        ).fetchone()
        return Pause(row[0], row[1], bytes(row[2])) if row else None

    def new_salt(self) -> bytes:
        return os.urandom(16)

    def set_pause(self, reason: str, fingerprint: str, salt: bytes) -> None:
        self.conn.execute(
            """INSERT INTO cdp_sources.pauses (tenant, source, reason, fingerprint, salt, paused_at)
               VALUES (%s, %s, %s, %s, %s, now())
               ON CONFLICT (tenant, source) DO UPDATE SET reason = excluded.reason,
                 fingerprint = excluded.fingerprint, salt = excluded.salt, paused_at = excluded.paused_at""",
            (self.tenant, self.source, reason, fingerprint, salt),
        )

    def clear_pause(self) -> None:
        self.conn.execute(
            "DELETE FROM cdp_sources.pauses WHERE tenant = %s AND source = %s", (self.tenant, self.source)
        )


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(SCHEMA_LOCK)
        conn.execute(SCHEMA_SQL)


@contextmanager
def source_session(dsn: str, tenant: str, source: str) -> Iterator[SourceSession]:
    """The source's state, under its run lock; `SourceBusy` when another run holds it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn)
        if not conn.execute(RUN_LOCK, (tenant, source)).fetchone()[0]:
            raise SourceBusy(f"source {tenant}/{source} is already running")
        try:
            yield SourceSession(conn, tenant, source)
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")


def read_pause(dsn: str, tenant: str, source: str) -> Pause | None:
    """The source's pause, if any, without taking its lock (for schedules and the UI)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn)
        return SourceSession(conn, tenant, source).pause()


def read_status(dsn: str, tenant: str, source: str) -> tuple[dict | None, datetime | None, Pause | None]:
    """(bookmark, when it was saved, pause) of the source, without taking its lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn)
        row = conn.execute(
            "SELECT state, updated_at FROM cdp_sources.bookmarks WHERE tenant = %s AND source = %s", (tenant, source)
        ).fetchone()
        return (*(row or (None, None)), SourceSession(conn, tenant, source).pause())
