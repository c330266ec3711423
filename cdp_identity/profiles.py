"""Golden records: one profile per `cdp_customer_id`, with attributes chosen by the survivorship
rules in `survivorship.yaml` and computed traits, and their SCD type 2 history.

Each curated row reaches its profile through its first identifier (the source's anchor column),
looked up in the identity map. Everything is computed in Spark; only counts reach the driver.
"""

import functools
from datetime import date, timedelta
from pathlib import Path

import yaml
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp_identity.sources import BY_TABLE, identified_records
from cdp_resources.spark import delta_table_name

SURVIVORSHIP_FILE = Path(__file__).parent / "survivorship.yaml"
# The attributes whose changes segmentation cares about: a new history row when any of them changes.
TRACKED = ["email", "country", "company_name", "industry", "orders", "first_order_date", "last_order_date"]
# Columns the traits read, beyond the survivorship attributes.
TRAIT_COLUMNS = {"orders": ("order_id", "total_usd"), "events": ("anonymous_id",)}


@functools.cache
def survivorship() -> dict:
    with open(SURVIVORSHIP_FILE) as handle:
        return yaml.safe_load(handle)["attributes"]


def records_with_profile(source: str, rows: DataFrame, identity_map: DataFrame, *keep: str) -> DataFrame:
    """Curated `rows` of `source` with the cdp_customer_id of their anchor identifier (rows without one left out)."""
    records = (
        identified_records(BY_TABLE[source], rows, *keep)
        .where(F.size("ids") > 0)
        .withColumn("node_id", F.col("ids")[0]["node_id"])
    )
    return records.join(identity_map.select("tenant_id", "node_id", "cdp_customer_id"), ["tenant_id", "node_id"])


def _linked(tables: dict[str, DataFrame], identity_map: DataFrame) -> dict[str, DataFrame]:
    """Each source's rows with their cdp_customer_id and the columns the profile reads from them,
    computed once (identifier normalisation included) and shared by every part of the profile."""
    needed = {source: set(TRAIT_COLUMNS.get(source, ())) for source in tables}
    for spec in survivorship().values():
        for source, column in spec["sources"].items():
            if source in needed:
                needed[source].add(column)
    return {
        source: records_with_profile(source, rows, identity_map, *sorted(needed[source])).localCheckpoint()
        for source, rows in tables.items()
    }


def _attribute_candidates(linked: dict[str, DataFrame]) -> DataFrame:
    """(tenant_id, cdp_customer_id, attribute, value, source_rank, seen_at) for every declared attribute."""
    candidates = None
    for source, rows in linked.items():
        wanted = {
            name: (list(spec["sources"]).index(source), spec["sources"][source])
            for name, spec in survivorship().items()
            if source in spec["sources"]
        }
        if not wanted:
            continue
        stacked = F.explode(
            F.array(
                *(
                    F.struct(
                        F.lit(name).alias("attribute"),
                        F.col(column).cast("string").alias("value"),
                        F.lit(rank).alias("source_rank"),
                    )
                    for name, (rank, column) in wanted.items()
                )
            )
        )
        part = (
            rows.select("tenant_id", "cdp_customer_id", "seen_at", stacked.alias("a"))
            .select("tenant_id", "cdp_customer_id", "a.attribute", "a.value", "a.source_rank", "seen_at")
            .where(F.col("value").isNotNull())
        )
        candidates = part if candidates is None else candidates.unionByName(part)
    return candidates


def _survivors(candidates: DataFrame) -> DataFrame:
    """One column per attribute with the surviving value, cast to its declared type."""
    rule = F.create_map(*(F.lit(x) for name, spec in survivorship().items() for x in (name, spec["rule"])))
    by_priority = F.when(rule[F.col("attribute")] == "source_priority", F.col("source_rank")).otherwise(0)
    best = Window.partitionBy("tenant_id", "cdp_customer_id", "attribute").orderBy(
        by_priority, F.col("seen_at").desc_nulls_last(), F.col("source_rank")
    )
    chosen = candidates.withColumn("n", F.row_number().over(best)).where("n = 1")
    wide = (
        chosen.groupBy("tenant_id", "cdp_customer_id").pivot("attribute", sorted(survivorship())).agg(F.first("value"))
    )
    return wide.select(
        "tenant_id",
        "cdp_customer_id",
        *(F.col(name).cast(spec["type"]).alias(name) for name, spec in sorted(survivorship().items())),
    )


def _contact_points(identity_map: DataFrame) -> DataFrame:
    """A profile's email and phone: its most recently seen identifiers of those types; and its identifier count."""

    def latest(kind):
        return F.max_by(
            F.when(F.col("id_type") == kind, F.col("id_value")), F.when(F.col("id_type") == kind, F.col("last_seen"))
        )

    return identity_map.groupBy("tenant_id", "cdp_customer_id").agg(
        latest("email").alias("email"),
        latest("phone").alias("phone"),
        F.count("*").alias("identifiers"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
        F.min("id_since").alias("profile_since"),
    )


def _order_traits(orders: DataFrame | None) -> DataFrame | None:
    if orders is None:
        return None
    return orders.groupBy("tenant_id", "cdp_customer_id").agg(
        F.countDistinct("order_id").alias("orders"),
        F.sum("total_usd").cast("decimal(18,2)").alias("total_revenue_usd"),
        F.min(F.to_date("seen_at")).alias("first_order_date"),
        F.max(F.to_date("seen_at")).alias("last_order_date"),
    )


def _event_traits(events: DataFrame | None, as_of: date) -> DataFrame | None:
    if events is None:
        return None
    since = F.lit(as_of - timedelta(days=29))
    rows = events.where(F.to_date("seen_at").between(since, F.lit(as_of)))
    return rows.groupBy("tenant_id", "cdp_customer_id").agg(
        F.count("*").alias("events_30d"), F.countDistinct("anonymous_id", F.to_date("seen_at")).alias("sessions_30d")
    )


def _preferred_channel(linked: dict[str, DataFrame]) -> DataFrame:
    """The channel (shop, payments, sales, app) with the most records of the person; ties by name."""
    touches = None
    for rows in linked.values():
        part = rows.select("tenant_id", "cdp_customer_id", "channel")
        touches = part if touches is None else touches.union(part)
    counts = touches.groupBy("tenant_id", "cdp_customer_id", "channel").count()
    best = Window.partitionBy("tenant_id", "cdp_customer_id").orderBy(F.col("count").desc(), "channel")
    return (
        counts.withColumn("n", F.row_number().over(best))
        .where("n = 1")
        .select("tenant_id", "cdp_customer_id", F.col("channel").alias("preferred_channel"))
    )


def build_profiles(tables: dict[str, DataFrame], identity_map: DataFrame, as_of: date) -> DataFrame:
    """One row per profile: contact points, surviving attributes and traits as of `as_of`.

    tables: curated rows by table name (the sources in `cdp_identity.sources`) up to `as_of`."""
    linked = _linked(tables, identity_map)
    profiles = _contact_points(identity_map)
    for part in (
        _survivors(_attribute_candidates(linked)),
        _order_traits(linked.get("orders")),
        _event_traits(linked.get("events"), as_of),
        _preferred_channel(linked),
    ):
        if part is not None:
            profiles = profiles.join(part, ["tenant_id", "cdp_customer_id"], "left")
    return (
        profiles.fillna(0, ["orders", "events_30d", "sessions_30d"])
        .withColumn("total_revenue_usd", F.coalesce("total_revenue_usd", F.lit(0).cast("decimal(18,2)")))
        .withColumn(
            "average_order_value_usd",
            F.when(F.col("orders") > 0, F.col("total_revenue_usd") / F.col("orders")).cast("decimal(18,2)"),
        )
        .withColumn("as_of", F.lit(as_of))
    )


def _tracked_hash():
    return F.sha2(F.to_json(F.struct(*TRACKED)), 256)


def update_history(spark: SparkSession, path: str, profiles: DataFrame, as_of: date) -> dict[str, int]:
    """SCD type 2 on the tracked attributes, in one Delta MERGE (SQL, so it runs on Spark Connect
    too): the current row of a profile whose tracked values changed (or that merged away) is closed
    on `as_of`, and a new current row opens."""
    current = (
        profiles.select("tenant_id", "cdp_customer_id", *TRACKED)
        .withColumn("row_hash", _tracked_hash())
        .withColumn("valid_from", F.lit(as_of))
        .withColumn("valid_to", F.lit(None).cast("date"))
        .withColumn("is_current", F.lit(True))
    )
    try:
        current.writeTo(delta_table_name(path)).using("delta").create()  # refused at once when the table exists
        return {"opened": spark.read.format("delta").load(path).count(), "closed": 0}
    except AnalysisException as error:
        if error.getCondition() != "TABLE_OR_VIEW_ALREADY_EXISTS":
            raise
    open_rows = spark.read.format("delta").load(path).where("is_current")
    opened = current.join(
        open_rows.select("tenant_id", "cdp_customer_id", "row_hash"),
        ["tenant_id", "cdp_customer_id", "row_hash"],
        "left_anti",
    )
    gone = open_rows.select("tenant_id", "cdp_customer_id").join(
        current.select("tenant_id", "cdp_customer_id"), ["tenant_id", "cdp_customer_id"], "left_anti"
    )
    closing = (
        opened.select("tenant_id", "cdp_customer_id")
        .union(gone)
        .select("tenant_id", F.col("cdp_customer_id").alias("merge_id"))
    )
    staged = (
        opened.withColumn("merge_id", F.lit(None).cast("string"))
        .unionByName(closing, allowMissingColumns=True)
        .localCheckpoint()
    )
    if staged.isEmpty():
        return {"opened": 0, "closed": 0}
    merged = spark.sql(
        f"MERGE INTO {delta_table_name(path)} AS h USING {{staged}} AS s "
        "ON h.tenant_id = s.tenant_id AND h.cdp_customer_id = s.merge_id AND h.is_current "
        f"WHEN MATCHED THEN UPDATE SET valid_to = DATE'{as_of.isoformat()}', is_current = false "
        "WHEN NOT MATCHED AND s.merge_id IS NULL THEN INSERT *",
        staged=staged,
    ).first()
    return {"opened": merged.num_inserted_rows, "closed": merged.num_updated_rows}
