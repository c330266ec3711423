"""Identity and profile assets: the identity graph (Delta, by event day), the resolved identity
map with its merges and exclusions, the golden-record profiles and their SCD type 2 history.

The graph is built incrementally: partition D reads curated day D of every identifier source and
replaces day D of `identity/nodes` and `identity/edges`. Resolution and profiles are current-state
tables: any partition's run resolves the whole stored graph (ids carried over from the previous
map, so they are stable) and rebuilds the profiles, so re-running an older day after late data is
always correct.
"""

import functools
from datetime import date, timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp_assets.keys import GRAPH_KEY, MAP_KEY, PROFILES_KEY, curated_key
from cdp_identity.profiles import build_profiles, update_history
from cdp_identity.resolve import resolve
from cdp_identity.sources import SOURCES, identified_records, occurrences, record_edges
from cdp_resources.delta_tables import latest_version, read_delta, replace_partitions
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import EDGES, EXCLUSIONS, HISTORY, MAP, MERGES, NODES, PROFILES
from cdp_resources.previews import preview
from cdp_resources.spark import SparkDeltaResource
from cdp_transform.curated_store import read_curated
from partitions import daily_partitions

IDENTITY_OWNERS = ["team:identity"]
COMMON = dict(partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run())
KINDS = {"spark", "delta"}


def _days(context: AssetExecutionContext) -> tuple[date, date]:
    window = context.partition_time_window
    return window.start.date(), window.end.date() - timedelta(days=1)


@asset(
    key=GRAPH_KEY,
    group_name="identity",
    owners=IDENTITY_OWNERS,
    kinds=KINDS,
    deps=[curated_key(s.table) for s in SOURCES],
    **COMMON,
    description="The identity graph by event day: nodes are identifiers (email, E.164 phone, Shopify, Stripe, Salesforce "
    "contact, app user and anonymous ids), edges join identifiers seen on the same record. Delta tables "
    f"`{NODES}` and `{EDGES}`.",
)
def identity_graph(context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource) -> MaterializeResult:
    first, last = _days(context)
    session = spark.session_for(lake)
    parts = [
        identified_records(source, rows)
        for source in SOURCES
        if (rows := read_curated(session, lake, source.table, first, last)) is not None
    ]
    if not parts:
        return MaterializeResult(
            metadata={"nodes": 0, "edges": 0, "first_day": first.isoformat(), "last_day": last.isoformat()}
        )
    records = functools.reduce(DataFrame.union, parts).localCheckpoint()
    nodes, edges = occurrences(records), record_edges(records)
    node_days = (
        nodes.groupBy("tenant_id", "event_date", "node_id")
        .agg(
            F.first("id_type").alias("id_type"),
            F.first("id_value").alias("id_value"),
            F.min("seen_at").alias("first_seen"),
            F.max("seen_at").alias("last_seen"),
            F.count("*").alias("records"),
            F.sort_array(F.collect_set("source")).alias("sources"),
        )
        .localCheckpoint()
    )
    edge_days = (
        edges.groupBy("tenant_id", "event_date", "src", "dst")
        .agg(
            F.first("src_type").alias("src_type"),
            F.first("dst_type").alias("dst_type"),
            F.min("seen_at").alias("first_seen"),
            F.count("*").alias("records"),
            F.sort_array(F.collect_set("source")).alias("sources"),
        )
        .localCheckpoint()
    )
    replace_partitions(node_days, lake.spark_path(NODES), "event_date", first, last)
    replace_partitions(edge_days, lake.spark_path(EDGES), "event_date", first, last)
    by_type = {r.id_type: r["count"] for r in node_days.groupBy("id_type").count().collect()}
    metadata = {
        "nodes": sum(by_type.values()),
        "edges": edge_days.count(),
        "nodes_by_type": MetadataValue.json(dict(sorted(by_type.items()))),
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
    }
    return MaterializeResult(metadata=metadata)


@multi_asset(
    specs=[
        AssetSpec(
            MAP_KEY,
            deps=[GRAPH_KEY],
            description="Every identifier that belongs to a person, with its stable "
            "cdp_customer_id (large-star/small-star connected components under the merge rules).",
            owners=IDENTITY_OWNERS,
            group_name="identity",
            kinds=KINDS,
        ),
        AssetSpec(
            ["identity", "merges"],
            deps=[GRAPH_KEY],
            owners=IDENTITY_OWNERS,
            group_name="identity",
            kinds=KINDS,
            description="Every time profiles merged (the older id survives) or split, with the identifiers that caused it and the run.",
        ),
        AssetSpec(
            ["identity", "exclusions"],
            deps=[GRAPH_KEY],
            owners=IDENTITY_OWNERS,
            group_name="identity",
            kinds=KINDS,
            description="Identifiers that join nothing (blocked values, identifiers shared by several people) and edges that gave way to a limit.",
        ),
    ],
    **COMMON,
)
def identity_resolution(context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource):
    _, last = _days(context)
    session = spark.session_for(lake)
    stored_nodes, stored_edges = read_delta(session, lake, NODES), read_delta(session, lake, EDGES)
    if stored_nodes is None:
        for key in context.selected_asset_keys:
            yield MaterializeResult(asset_key=key, metadata={"rows": 0})
        return
    nodes = stored_nodes.groupBy("tenant_id", "node_id").agg(
        F.first("id_type").alias("id_type"),
        F.first("id_value").alias("id_value"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )
    edges = stored_edges.select("tenant_id", "src", "dst", "src_type", "dst_type").distinct()
    version = latest_version(lake, MAP)
    previous = read_delta(session, lake, MAP, version) if version is not None else None
    result = resolve(session, nodes, edges, previous)

    result.identity_map.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
        lake.spark_path(MAP)
    )
    stamped = (
        result.merges.withColumn("merged_at", F.current_timestamp())
        .withColumn("run_id", F.lit(context.run_id))
        .withColumn("as_of", F.lit(last))
        .localCheckpoint()
    )
    stamped.write.format("delta").mode("append").save(lake.spark_path(MERGES))
    excluded = result.exclusions.withColumn("run_id", F.lit(context.run_id)).localCheckpoint()
    excluded.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(lake.spark_path(EXCLUSIONS))

    identity_map = read_delta(session, lake, MAP)
    sizes = identity_map.groupBy("tenant_id", "cdp_customer_id").count()
    profiles, largest = sizes.agg(F.count("*"), F.max("count")).first()
    merged = {r.event: r["count"] for r in stamped.groupBy("event").count().collect()}
    excluded_by = {r.kind: r["count"] for r in excluded.groupBy("kind").count().collect()}
    yield MaterializeResult(
        asset_key=MAP_KEY,
        metadata={
            "dagster/row_count": identity_map.count(),
            "profiles": profiles,
            "largest_profile_identifiers": largest,
            "merges_this_run": merged.get("merged", 0),
            "splits_this_run": merged.get("split", 0),
            "excluded": MetadataValue.json(excluded_by),
            "components_rounds": MetadataValue.json(result.rounds),
            "as_of": last.isoformat(),
            "table_path": MetadataValue.path(lake.spark_path(MAP)),
            "preview": preview(identity_map, ["tenant_id", "id_type", "id_value", "cdp_customer_id", "first_seen"]),
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["identity", "merges"]),
        metadata={
            "merged_this_run": merged.get("merged", 0),
            "split_this_run": merged.get("split", 0),
            "dagster/row_count": read_delta(session, lake, MERGES).count(),
            "table_path": MetadataValue.path(lake.spark_path(MERGES)),
        },
    )
    yield MaterializeResult(
        asset_key=AssetKey(["identity", "exclusions"]),
        metadata={
            "dagster/row_count": sum(excluded_by.values()),
            "by_kind": MetadataValue.json(excluded_by),
            "preview": preview(excluded, ["tenant_id", "kind", "id_type", "id_value", "reason"], rows=10),
            "table_path": MetadataValue.path(lake.spark_path(EXCLUSIONS)),
        },
    )


@asset(
    key=PROFILES_KEY,
    group_name="profiles",
    owners=IDENTITY_OWNERS,
    kinds=KINDS,
    deps=[MAP_KEY, *(curated_key(s.table) for s in SOURCES)],
    **COMMON,
    description="One golden record per cdp_customer_id: email and phone, attributes by the survivorship rules "
    "(cdp_identity/survivorship.yaml), and traits (first/last seen, orders, revenue and average order value in "
    "USD, last order date, sessions and events in the last 30 days, preferred channel), as of the run's last day.",
)
def customer_profiles(
    context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource
) -> MaterializeResult:
    _, last = _days(context)
    session = spark.session_for(lake)
    identity_map = read_delta(session, lake, MAP)
    tables = {s.table: rows for s in SOURCES if (rows := read_curated(session, lake, s.table, None, last)) is not None}
    profiles = build_profiles(tables, identity_map, last).localCheckpoint()
    profiles.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(lake.spark_path(PROFILES))
    stats = profiles.agg(
        F.count("*").alias("n"),
        F.sum((F.col("orders") > 0).cast("int")).alias("buyers"),
        F.sum(F.col("company_name").isNotNull().cast("int")).alias("with_company"),
        F.max("identifiers").alias("largest"),
    ).first()
    return MaterializeResult(
        metadata={
            "dagster/row_count": stats.n,
            "with_orders": stats.buyers,
            "with_company": stats.with_company,
            "largest_profile_identifiers": stats.largest,
            "as_of": last.isoformat(),
            "table_path": MetadataValue.path(lake.spark_path(PROFILES)),
            "preview": preview(
                profiles,
                [
                    "cdp_customer_id",
                    "email",
                    "country",
                    "company_name",
                    "orders",
                    "total_revenue_usd",
                    "preferred_channel",
                ],
            ),
        }
    )


@asset(
    key=AssetKey(["profiles", "profile_history"]),
    group_name="profiles",
    owners=IDENTITY_OWNERS,
    deps=[PROFILES_KEY],
    kinds=KINDS,
    **COMMON,
    description="SCD type 2 history of the profile attributes segmentation uses (email, country, company, industry, "
    "orders, first and last order date): valid_from ≤ day < valid_to gives a profile as of any past day.",
)
def profile_history(context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource) -> MaterializeResult:
    _, last = _days(context)
    session = spark.session_for(lake)
    counts = update_history(session, lake.spark_path(HISTORY), read_delta(session, lake, PROFILES), last)
    return MaterializeResult(
        metadata={
            **counts,
            "as_of": last.isoformat(),
            "table_path": MetadataValue.path(lake.spark_path(HISTORY)),
            "dagster/row_count": read_delta(session, lake, HISTORY).count(),
        }
    )


identity_assets = [identity_graph, identity_resolution, customer_profiles, profile_history]
