"""Build beside, check, swap in one transaction.

Every warehouse table is a PostgreSQL partitioned table: one partition per event day (curated
tables) or per tenant (current-state tables). A load never writes into a live partition: it
builds the new partitions under a shadow table in `raw_cdp_loading` (COPY from the Spark
executors), checks them (row count equal to the Delta source, key unique: the unique index is
built there), and then, in one transaction, detaches and drops the live partitions it replaces and
attaches the new ones. Readers see the old rows or the new ones, never a half-loaded day; views on
the table (dbt's staging models) stay valid because the parent table never changes, and so does its
row-level security (`cdp_resources/warehouse_security.py`): policies live on the parent, which
tenant roles read through; its partitions carry no grant, so nothing reads them directly.

An incremental run replaces the days of its partition range; a historic run (every day at once)
replaces them all in the same single transaction. For a current-state curated table (one row per
key across days), whose runs remove older versions from other days, the days whose live row count
differs from the Delta table's (`stale_days`) are replaced in the same swap.
"""

import hashlib
import time
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg
from psycopg import sql
from pyspark.sql import DataFrame

from cdp_resources.warehouse_security import ensure_security, protect, register_pii_columns
from cdp_warehouse.copy import copy_frame, postgres_columns
from cdp_warehouse.tables import BY_DAY, SCHEMA, STAGING_SCHEMA, WarehouseTable


class WarehouseLoadError(RuntimeError):
    """A load that did not pass its checks; the live table is unchanged."""


@dataclass
class LoadResult:
    table: str
    rows: int
    partitions_replaced: int
    partitions_dropped: int
    seconds: dict[str, float]


def child_name(table: WarehouseTable, unit: date | str) -> str:
    """The live partition's name: `orders_20260105` or `customer_profiles_t_<hash of the tenant>`."""
    if table.dated:
        return f"{table.name}_{unit:%Y%m%d}"
    return f"{table.name}_t_{hashlib.sha1(unit.encode()).hexdigest()[:10]}"


def _bounds(table: WarehouseTable, unit: date | str) -> tuple[sql.Composable, sql.Composable]:
    """(partition bound clause, the equivalent CHECK expression) for one unit."""
    column = sql.Identifier(table.partition_by)
    if table.dated:
        low, high = sql.Literal(unit), sql.Literal(unit + timedelta(days=1))
        return (
            sql.SQL("FOR VALUES FROM ({}) TO ({})").format(low, high),
            sql.SQL("{c} IS NOT NULL AND {c} >= {l} AND {c} < {h}").format(c=column, l=low, h=high),
        )
    value = sql.Literal(unit)
    return sql.SQL("FOR VALUES IN ({})").format(value), sql.SQL("{c} IS NOT NULL AND {c} = {v}").format(
        c=column, v=value
    )


def _index_name(name: str, number: int) -> str:
    """The unique key index is number 0, the declared indexes follow."""
    return f"{name}_key" if number == 0 else f"{name}_ix{number - 1}"


def _index_statements(table: WarehouseTable, schema: str, name: str) -> list[sql.Composed]:
    target = sql.Identifier(schema, name)
    columns = lambda cols: sql.SQL(", ").join(map(sql.Identifier, cols))  # noqa: E731
    statements = [
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(_index_name(name, 0)), target, columns(table.key)
        )
    ]
    for number, index in enumerate(table.indexes, start=1):
        statements.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(_index_name(name, number)), target, columns(index)
            )
        )
    return statements


def ensure_live_table(conn: psycopg.Connection, table: WarehouseTable, columns: list[tuple[str, str]]) -> None:
    """Create the partitioned live table with its indexes, or add columns the source has gained."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(STAGING_SCHEMA)))
    existing = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (SCHEMA, table.name),
        )
    }
    live = sql.Identifier(SCHEMA, table.name)
    if not existing:
        definition = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns)
        conn.execute(
            sql.SQL("CREATE TABLE {} ({}) PARTITION BY {} ({})").format(
                live, definition, sql.SQL("RANGE" if table.dated else "LIST"), sql.Identifier(table.partition_by)
            )
        )
        if table.description:
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(live, sql.Literal(table.description)))
    for name, pg_type in columns:
        if existing and name not in existing:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(live, sql.Identifier(name), sql.SQL(pg_type))
            )
    declared = _index_statements(table, SCHEMA, table.name)
    for statement in declared:
        conn.execute(statement)
    for (stale,) in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s AND NOT indexname = ANY(%s)",
        (SCHEMA, table.name, [_index_name(table.name, n) for n in range(len(declared))]),
    ).fetchall():
        # An index no longer declared: attaching a partition would otherwise build it under the swap's lock.
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, stale)))
    ensure_security(conn)
    register_pii_columns(conn, table.pii)  # before protect: it grants and masks by the registered names
    protect(conn, SCHEMA, table.name)


def stale_days(conn: psycopg.Connection, table: WarehouseTable, source_counts: dict[date, int]) -> list[date]:
    """The loaded days whose live row count differs from `source_counts` (rows per day of the
    Delta table now): a current-state table's days from which a later run removed older
    versions. Empty when the live table does not exist yet."""
    if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{table.name}",)).fetchone()[0] is None:
        return []
    live = conn.execute(
        sql.SQL("SELECT {}, count(*) FROM {} GROUP BY 1").format(
            sql.Identifier(BY_DAY), sql.Identifier(SCHEMA, table.name)
        )
    ).fetchall()
    return sorted(day for day, rows in live if source_counts.get(day, 0) != rows)


def _live_children(conn: psycopg.Connection, table: WarehouseTable) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            (f"{SCHEMA}.{table.name}",),
        )
    }


class _Shadow:
    """The new partitions, built under a shadow parent in the loading schema."""

    def __init__(self, table: WarehouseTable, units: list, token: str):
        self.table, self.units, self.token = table, units, token
        self.name = f"{table.name}_{token}"

    def new_child(self, unit) -> str:
        return f"{child_name(self.table, unit)}_{self.token}"

    def create(self, conn: psycopg.Connection) -> None:
        shadow = sql.Identifier(STAGING_SCHEMA, self.name)
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS) PARTITION BY {} ({})").format(
                shadow,
                sql.Identifier(SCHEMA, self.table.name),
                sql.SQL("RANGE" if self.table.dated else "LIST"),
                sql.Identifier(self.table.partition_by),
            )
        )
        for (
            unit
        ) in self.units:  # the bounds also as a CHECK, tested row by row by the COPY: attaching then needs no scan
            bound, check = _bounds(self.table, unit)
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF {} (CONSTRAINT {} CHECK ({})) {}").format(
                    sql.Identifier(STAGING_SCHEMA, self.new_child(unit)),
                    shadow,
                    sql.Identifier(f"{child_name(self.table, unit)}_bounds"),
                    check,
                    bound,
                )
            )

    def check(self, conn: psycopg.Connection, expected_rows: int) -> int:
        """Row count equal to the rows read from the Delta source, key unique (the index build checks it)."""
        loaded = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(STAGING_SCHEMA, self.name))
        ).fetchone()[0]
        if loaded != expected_rows:
            raise WarehouseLoadError(
                f"{self.table.name}: {loaded:,} rows loaded but the Delta source has {expected_rows:,}; "
                "the live table is unchanged"
            )
        try:
            for statement in _index_statements(self.table, STAGING_SCHEMA, self.name):
                conn.execute(statement)
        except psycopg.errors.UniqueViolation as error:
            raise WarehouseLoadError(
                f"{self.table.name}: key ({', '.join(self.table.key)}) is not unique in the loaded rows "
                f"({error.diag.message_detail}); the live table is unchanged"
            ) from error
        return loaded

    def drop(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(STAGING_SCHEMA, self.name)))


def _swap(conn: psycopg.Connection, shadow: _Shadow, drop_others: bool) -> tuple[int, int]:
    """In one transaction: live partitions of the loaded units (and, with `drop_others`, every other
    live partition) out, the new ones in. Returns (replaced, dropped)."""
    table = shadow.table
    live = sql.Identifier(SCHEMA, table.name)
    replaced = dropped = 0
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(live))
        children = _live_children(conn, table)
        loaded = {child_name(table, unit) for unit in shadow.units}
        for old in sorted(children - loaded if drop_others else set()):
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(live, sql.Identifier(SCHEMA, old)))
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCHEMA, old)))
            dropped += 1
        for unit in shadow.units:
            name, new = child_name(table, unit), shadow.new_child(unit)
            if name in children:
                conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(live, sql.Identifier(SCHEMA, name)))
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCHEMA, name)))
                replaced += 1
            conn.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    sql.Identifier(STAGING_SCHEMA, shadow.name), sql.Identifier(STAGING_SCHEMA, new)
                )
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(STAGING_SCHEMA, new), sql.Identifier(SCHEMA)
                )
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(SCHEMA, new), sql.Identifier(name))
            )
            bound, _ = _bounds(table, unit)
            conn.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(live, sql.Identifier(SCHEMA, name), bound)
            )
        shadow.drop(conn)
    return replaced, dropped


def load_table(
    table: WarehouseTable,
    frame: DataFrame,
    dsn: str,
    units: list,
    token: str,
    drop_others: bool = False,
    connections: int = 4,
) -> LoadResult:
    """Load `frame` (the Delta rows of `units`: days for a dated table, tenants otherwise) into the
    live table by building beside and swapping, with `connections` parallel COPY streams.
    `drop_others` also removes live partitions not in `units` (a current-state table's tenants
    that are gone)."""
    seconds = {}
    started = time.perf_counter()
    columns = postgres_columns(frame)
    shadow = _Shadow(table, sorted(set(units)), token)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_live_table(conn, table, columns)
        shadow.drop(conn)
        shadow.create(conn)
    try:
        copied_at = time.perf_counter()
        expected = copy_frame(frame, dsn, STAGING_SCHEMA, shadow.name, connections)  # rows read from the Delta snapshot
        seconds["copy"] = time.perf_counter() - copied_at
        with psycopg.connect(dsn, autocommit=True) as conn:
            checked_at = time.perf_counter()
            rows = shadow.check(conn, expected)
            seconds["check_and_index"] = time.perf_counter() - checked_at
            swapped_at = time.perf_counter()
            replaced, dropped = _swap(conn, shadow, drop_others)
            seconds["swap"] = time.perf_counter() - swapped_at
    except BaseException:
        with psycopg.connect(dsn, autocommit=True) as conn:
            shadow.drop(conn)
        raise
    seconds["total"] = time.perf_counter() - started
    return LoadResult(table.name, rows, replaced, dropped, {k: round(v, 3) for k, v in seconds.items()})
