"""The profile API's serving tables (`cdp_api/serving.py`): after dbt and segment membership, one
asset copies identity resolution's merges and exclusions from Delta beside the warehouse's
profiles, identifiers, timelines and memberships in `api_build`, indexes them and swaps the schema
in as `api` in one transaction, so `cdp api serve` never reads half a run."""

from dagster import AssetExecutionContext, AssetKey, BackfillPolicy, MaterializeResult, MetadataValue, asset

from cdp_api.serving import BUILD_SCHEMA, EXCLUSIONS_RAW, MERGES_RAW, RAW_COLUMNS, SCHEMA, finish_build, start_build
from cdp_assets.keys import MAP_KEY, MEMBERSHIP_KEY, SERVING_KEY, warehouse_key
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import EXCLUSIONS, MERGES
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from cdp_warehouse.copy import copy_frame
from partitions import daily_partitions

API_OWNERS = ["team:data-platform"]


@asset(
    key=SERVING_KEY,
    deps=[
        MEMBERSHIP_KEY,
        AssetKey(["marts", "customer_360"]),
        AssetKey(["intermediate", "int_customer_events"]),
        AssetKey(["intermediate", "int_customer_orders"]),
        warehouse_key(MAP_KEY.path[-1]),
        AssetKey(["identity", "merges"]),
        AssetKey(["identity", "exclusions"]),
    ],
    group_name="api",
    owners=API_OWNERS,
    kinds={"postgres", "spark"},
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    description="The profile API's tables in PostgreSQL schema `api`: profiles (marts.customer_360), identifiers, "
    "timeline (events and orders), segment memberships, identity merges and exclusions, with their lookup, "
    "prefix and trigram indexes; built in `api_build` and swapped in as `api` in one transaction, then "
    "protected by the warehouse's row-level security (docs/api.md).",
    metadata={"dagster/table_name": f"cdp.{SCHEMA}.profiles"},
)
def serving_tables(
    context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    session = spark.session_for(lake)
    with warehouse.connect(autocommit=True) as conn:
        start_build(conn)
        copied = {}
        for path, table in ((MERGES, MERGES_RAW), (EXCLUSIONS, EXCLUSIONS_RAW)):
            frame = read_delta(session, lake, path)
            if frame is None:
                copied[table] = 0
                continue
            columns = [name for name, _ in RAW_COLUMNS[table]]
            copied[table] = copy_frame(
                frame.select(*columns), warehouse.dsn(), BUILD_SCHEMA, table, warehouse.copy_connections
            )
        built = finish_build(conn)
    context.log.info(f"api serving tables as of {built.as_of_date}: {built.rows}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": built.rows["profiles"],
            "as_of_date": built.as_of_date or "",
            "rows": MetadataValue.json(built.rows),
            "copied_from_delta": MetadataValue.json(copied),
            "serve": "cdp api serve  (http://127.0.0.1:8000/docs, /ui)",
        }
    )
