"""Warehouse assets: every curated Delta table, the profiles and the identity map loaded into
PostgreSQL (`raw_cdp`) with COPY. A run replaces the days of its partition range (curated tables)
or every tenant (current-state tables) by building the new partitions beside the live ones and
swapping them in one transaction (`cdp_warehouse/load.py`); for a generic curated table, also the
days a curated run removed older versions from (`stale_days`)."""

from datetime import date, timedelta

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from psycopg import sql
from pyspark.sql import Window
from pyspark.sql import functions as F

from cdp_assets.keys import MAP_KEY, PREDICTIONS_KEY, PROFILES_KEY, curated_key, warehouse_key
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from cdp_transform.curated_store import read_curated
from cdp_warehouse.load import load_table, stale_days
from cdp_warehouse.tables import IDENTITY_MAP, PREDICTIONS, PROFILES, SCHEMA, TABLES, WarehouseTable
from partitions import daily_partitions

WAREHOUSE_OWNERS = ["team:data-platform"]
_UPSTREAM = {PROFILES.name: PROFILES_KEY, IDENTITY_MAP.name: MAP_KEY, PREDICTIONS.name: PREDICTIONS_KEY}


def _preview(conn, table: WarehouseTable, rows: int = 5) -> MetadataValue:
    cursor = conn.execute(
        sql.SQL("SELECT * FROM {} LIMIT {}").format(sql.Identifier(SCHEMA, table.name), sql.Literal(rows))
    )
    columns = [c.name for c in cursor.description if not c.name.startswith("_")][:8]
    positions = [i for i, c in enumerate(cursor.description) if c.name in columns]
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return MetadataValue.md(
        header + "".join("| " + " | ".join(str(row[i]) for i in positions) + " |\n" for row in cursor)
    )


def warehouse_asset(table: WarehouseTable) -> AssetsDefinition:
    upstream = curated_key(table.name) if table.dated else _UPSTREAM[table.name]

    @asset(
        key=warehouse_key(table.name),
        deps=[upstream],
        group_name="warehouse",
        owners=WAREHOUSE_OWNERS,
        kinds={"postgres", "spark"},
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        description=f"`{SCHEMA}.{table.name}` in PostgreSQL, loaded with COPY from the Delta table `{table.lake_table}`. "
        + (
            "One PostgreSQL partition per event day; a run swaps in the days of its range in one transaction. "
            if table.dated
            else "Current state, one PostgreSQL partition per tenant, all swapped in one transaction. "
        )
        + table.description,
        metadata={"dagster/table_name": f"cdp.{SCHEMA}.{table.name}", "key": MetadataValue.json(list(table.key))},
    )
    def _load(
        context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        window = context.partition_time_window
        first, last = window.start.date(), window.end.date() - timedelta(days=1)
        session = spark.session_for(lake)
        stale = []
        if table.dated:
            frame = read_curated(session, lake, table.name, first, last)
            units = [first + timedelta(days=n) for n in range((last - first).days + 1)]
            if table.current_state and frame is not None:
                # Older versions this range's curated run removed from other days go here too.
                whole = read_curated(session, lake, table.name, None, date.max)
                counts = {r.event_date: r["count"] for r in whole.groupBy("event_date").count().collect()}
                with warehouse.connect() as conn:
                    stale = [day for day in stale_days(conn, table, counts) if not first <= day <= last]
                frame = whole.where(F.col("event_date").isin([*units, *stale]))
                units += stale
        else:
            frame = read_delta(session, lake, table.lake_table)
            if frame is not None and table.latest_of:
                latest = F.max(table.latest_of).over(Window.partitionBy("tenant_id"))
                frame = frame.withColumn("_latest", latest).where(F.col(table.latest_of) == F.col("_latest"))
                frame = frame.drop("_latest")
            units = [r.tenant_id for r in frame.select("tenant_id").distinct().collect()] if frame is not None else []
        if frame is None:
            return MaterializeResult(metadata={"rows_loaded": 0, "note": f"no Delta table at {table.lake_table} yet"})
        result = load_table(
            table,
            frame,
            warehouse.dsn(),
            units,
            context.run_id[:8],
            drop_others=not table.dated,
            connections=warehouse.copy_connections,
        )
        with warehouse.connect() as conn:
            total = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table.name))
            ).fetchone()[0]
            preview = _preview(conn, table)
        context.log.info(
            f"{SCHEMA}.{table.name}: {result.rows:,} rows in {result.seconds['total']:.1f}s {result.seconds}"
        )
        return MaterializeResult(
            metadata={
                "rows_loaded": result.rows,
                "dagster/row_count": total,
                "partitions_replaced": result.partitions_replaced,
                "partitions_added": len(set(units)) - result.partitions_replaced,
                "partitions_dropped": result.partitions_dropped,
                "seconds": MetadataValue.json(result.seconds),
                "first_day": first.isoformat(),
                "last_day": last.isoformat(),
                **({"stale_days_reloaded": MetadataValue.json([d.isoformat() for d in stale])} if stale else {}),
                "preview": preview,
            }
        )

    return _load


warehouse_assets = [warehouse_asset(table) for table in TABLES]
