"""The warehouse load on the real embedded PostgreSQL: COPY round-trips every type, a reload of one
day leaves no duplicate and no gap, a failed check changes nothing, the historic swap is atomic for a
reader in another connection; loaded tables match the Delta tables of the generator sample."""

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from pyspark.sql import functions as F

from cdp_warehouse.load import WarehouseLoadError, load_table
from cdp_warehouse.tables import BY_NAME, SCHEMA, STAGING_SCHEMA, TABLES, WarehouseTable
from tests.conftest import CURATED_CONFIG, run_assets

FIRST, LAST = CURATED_CONFIG.start, CURATED_CONFIG.start + timedelta(days=CURATED_CONFIG.days - 1)


def rows(warehouse, query: str, *params) -> list[tuple]:
    with warehouse.connect() as conn:
        return conn.execute(query, params).fetchall()


def test_copy_round_trips_every_type(spark, warehouse):
    table = WarehouseTable("round_trip", "unused", "event_date", ("tenant_id", "id", "event_date"))
    at = datetime(2026, 1, 1, 23, 59, 59, 123456, tzinfo=UTC)
    values = [
        (
            "t",
            1,
            'a,b "quoted"\nnew line ünïcode',
            "",
            Decimal("-12.50"),
            1.25,
            0.5,
            7,
            300,
            -2,
            True,
            at,
            datetime(2026, 1, 1, 8, 30),
            date(2025, 12, 31),
            ["x", "y"],
            {"k": 1},
            ("s", 2),
            date(2026, 1, 1),
        ),
        (
            "t",
            2,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            date(2026, 1, 1),
        ),
    ]
    frame = spark.createDataFrame(
        values,
        "tenant_id string, id bigint, text string, empty string, amount decimal(18,2), "
        "ratio double, share float, count int, small short, tiny byte, flag boolean, "
        "at timestamp, local timestamp_ntz, day date, tags array<string>, "
        "attributes map<string,int>, pair struct<name:string,n:int>, event_date date",
    )
    result = load_table(table, frame, warehouse.dsn(), [date(2026, 1, 1)], "rt")
    assert result.rows == 2
    loaded = rows(
        warehouse,
        f"SELECT id, text, empty, amount, ratio, share, count, small, tiny, flag, at, local, day, tags, "
        f"attributes, pair FROM {SCHEMA}.round_trip ORDER BY id",
    )
    assert loaded[0] == (
        1,
        values[0][2],
        "",
        Decimal("-12.50"),
        1.25,
        0.5,
        7,
        300,
        -2,
        True,
        at,
        datetime(2026, 1, 1, 8, 30),
        date(2025, 12, 31),
        ["x", "y"],
        {"k": 1},
        {"name": "s", "n": 2},
    )
    assert loaded[1] == (2, *[None] * 15)


def test_an_index_no_longer_declared_is_dropped(spark, warehouse):
    frame = spark.createDataFrame(
        [("t", 1, "a", date(2026, 1, 1))], "tenant_id string, id bigint, name string, event_date date"
    )
    indexed = WarehouseTable(
        "reindexed", "unused", "event_date", ("tenant_id", "id", "event_date"), (("tenant_id", "name"),)
    )
    load_table(indexed, frame, warehouse.dsn(), [date(2026, 1, 1)], "ix")
    indexes = f"SELECT indexname FROM pg_indexes WHERE schemaname = '{SCHEMA}' AND tablename = 'reindexed' ORDER BY 1"
    assert rows(warehouse, indexes) == [("reindexed_ix0",), ("reindexed_key",)]
    plain = WarehouseTable("reindexed", "unused", "event_date", ("tenant_id", "id", "event_date"))
    assert load_table(plain, frame, warehouse.dsn(), [date(2026, 1, 1)], "ix").partitions_replaced == 1
    assert rows(warehouse, indexes) == [("reindexed_key",)]


def test_an_empty_day_replaces_the_live_day(spark, warehouse):
    table = WarehouseTable("emptied", "unused", "event_date", ("tenant_id", "id", "event_date"))
    frame = spark.createDataFrame(
        [("t", n, date(2026, 1, 1)) for n in range(5)], "tenant_id string, id bigint, event_date date"
    )
    load_table(table, frame.repartition(3), warehouse.dsn(), [date(2026, 1, 1)], "e1")
    assert rows(warehouse, f"SELECT count(*) FROM {SCHEMA}.emptied") == [(5,)]
    result = load_table(table, frame.where("id < 0"), warehouse.dsn(), [date(2026, 1, 1)], "e2")
    assert (result.rows, result.partitions_replaced) == (0, 1)
    assert rows(warehouse, f"SELECT count(*) FROM {SCHEMA}.emptied") == [(0,)]


def delta_counts(spark, lake, table: WarehouseTable) -> dict:
    frame = spark.read.format("delta").load(lake.spark_path(table.lake_table))
    column = table.partition_by
    return {row[column]: row["count"] for row in frame.groupBy(column).count().collect()}


def warehouse_counts(warehouse, table: WarehouseTable) -> dict:
    return dict(rows(warehouse, f"SELECT {table.partition_by}, count(*) FROM {SCHEMA}.{table.name} GROUP BY 1"))


def test_historic_load_matches_delta(spark, warehouse_loaded, warehouse):
    lake, result = warehouse_loaded
    for table in TABLES:
        assert warehouse_counts(warehouse, table) == delta_counts(spark, lake, table), table.name
    event = result.asset_materializations_for_node("warehouse__orders")[0]
    assert event.metadata["rows_loaded"].value == sum(delta_counts(spark, lake, BY_NAME["orders"]).values())
    assert rows(warehouse, "SELECT count(*) FROM pg_tables WHERE schemaname = %s", STAGING_SCHEMA) == [(0,)]


def test_reloading_one_day_leaves_no_duplicate_and_no_gap(spark, warehouse_loaded, dagster_instance, warehouse):
    lake, _ = warehouse_loaded
    reloaded = [BY_NAME[name] for name in ("orders", "events", "shopify_customers", "customer_profiles")]
    before = {t.name: warehouse_counts(warehouse, t) for t in reloaded}
    assert run_assets(
        lake, dagster_instance, LAST, LAST, [f"warehouse/{t.name}" for t in reloaded], warehouse=warehouse
    ).success
    for table in reloaded:
        assert warehouse_counts(warehouse, table) == before[table.name] == delta_counts(spark, lake, table), table.name
    orders = BY_NAME["orders"]
    assert rows(warehouse, f"SELECT count(*) - count(DISTINCT ({', '.join(orders.key)})) FROM {SCHEMA}.orders") == [
        (0,)
    ]


def test_a_failed_check_leaves_the_live_table_unchanged(spark, warehouse_loaded, warehouse):
    lake, _ = warehouse_loaded
    table = BY_NAME["orders"]
    before = warehouse_counts(warehouse, table)
    day = spark.read.format("delta").load(lake.spark_path(table.lake_table)).where(F.col("event_date") == F.lit(LAST))
    with pytest.raises(WarehouseLoadError, match="not unique"):
        load_table(table, day.union(day.limit(1)), warehouse.dsn(), [LAST], "dup")
    assert warehouse_counts(warehouse, table) == before
    assert rows(warehouse, "SELECT count(*) FROM pg_tables WHERE schemaname = %s", STAGING_SCHEMA) == [(0,)]


def test_the_swap_is_atomic_for_a_reader(spark, warehouse_loaded, warehouse):
    """A reader polling from another connection sees the old rows or the new ones, never none or part."""
    lake, _ = warehouse_loaded
    table = BY_NAME["events"]
    events = spark.read.format("delta").load(lake.spark_path(table.lake_table))
    days = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]
    old = sum(warehouse_counts(warehouse, table).values())
    smaller = events.where(F.col("message_id") < "8")  # a different table: about half the rows
    new = smaller.count()
    seen, stop = set(), threading.Event()

    def read():
        with psycopg.connect(warehouse.dsn(), autocommit=True) as conn:
            while not stop.is_set():
                seen.add(conn.execute(f"SELECT count(*) FROM {SCHEMA}.events").fetchone()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        load_table(table, smaller, warehouse.dsn(), days, "atomic")
        load_table(table, events, warehouse.dsn(), days, "restore")
    finally:
        stop.set()
        reader.join()
    assert new != old and seen == {old, new}
    assert sum(warehouse_counts(warehouse, table).values()) == old
