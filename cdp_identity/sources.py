"""Where identifiers come from: for each curated table, which columns are which identifier type,
when the record was seen and through which channel.

`identified_records` gives each curated row its identifiers (strongest column first, nulls left
out); `occurrences` and `record_edges` turn those into the identity graph's nodes and edges (each
identifier of a record joined to the record's first one: a star per record connects them all).
"""

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_transform import normalise


@dataclass(frozen=True)
class IdentitySource:
    table: str
    identifiers: dict[str, str]  # id_type -> SQL expression over the curated row, anchor first
    seen_at: str  # when the record was observed (its version's time: never before its event day)
    channel: str
    raw_phone: bool = False  # the phone column is as typed (app traits), not yet E.164


SOURCES = [
    IdentitySource(
        "shopify_customers",
        {"shopify_customer_id": "cast(customer_id AS string)", "email": "email", "phone": "phone"},
        "coalesce(updated_at, created_at)",
        "shop",
    ),
    IdentitySource(
        "stripe_customers",
        {"stripe_customer_id": "customer_id", "email": "email", "phone": "phone"},
        "created_at",
        "payments",
    ),
    IdentitySource(
        "contacts",
        {"salesforce_contact_id": "contact_id", "email": "email", "phone": "phone"},
        "coalesce(updated_at, created_at)",
        "sales",
    ),
    IdentitySource(
        "orders", {"shopify_customer_id": "cast(customer_id AS string)", "email": "email"}, "ordered_at", "shop"
    ),
    IdentitySource("payments", {"stripe_customer_id": "customer_id", "email": "billing_email"}, "paid_at", "payments"),
    IdentitySource(
        "events",
        {"app_user_id": "user_id", "anonymous_id": "anonymous_id", "email": "trait_email", "phone": "trait_phone"},
        "event_ts",
        "app",
        raw_phone=True,
    ),
]
BY_TABLE = {source.table: source for source in SOURCES}


def node_id(tenant: Column, id_type: Column, value: Column) -> Column:
    """A 64-bit id for (tenant, type, value): the same identifier in two tenants never meets."""
    return F.xxhash64(tenant, id_type, value)


def _value(source: IdentitySource, id_type: str, expression: str) -> Column:
    value = F.expr(expression)
    if id_type == "phone" and source.raw_phone:  # as typed in an app: only international formats say which country
        value = normalise.phone(value, F.lit(None).cast("string"))
    return F.when(F.length(normalise.strip(value)) > 0, value)


def identified_records(source: IdentitySource, rows: DataFrame, *keep: str) -> DataFrame:
    """Curated `rows` as (tenant_id, event_date, source, channel, seen_at, ids, *keep), `ids` the record's
    identifiers in the source's order with nulls left out."""
    ids = F.array(
        *(
            F.struct(F.lit(kind).alias("id_type"), _value(source, kind, expression).alias("id_value"))
            for kind, expression in source.identifiers.items()
        )
    )
    with_nodes = F.transform(
        F.filter(ids, lambda i: i.id_value.isNotNull()),
        lambda i: F.struct(
            i.id_type.alias("id_type"),
            i.id_value.alias("id_value"),
            node_id(F.col("tenant_id"), i.id_type, i.id_value).alias("node_id"),
        ),
    )
    return rows.select(
        "tenant_id",
        "event_date",
        F.lit(source.table).alias("source"),
        F.lit(source.channel).alias("channel"),
        F.coalesce(F.expr(source.seen_at), F.col("event_date").cast("timestamp")).alias("seen_at"),
        with_nodes.alias("ids"),
        *keep,
    )


def occurrences(records: DataFrame) -> DataFrame:
    """One row per identifier per record: tenant_id, event_date, source, seen_at, id_type, id_value, node_id."""
    return records.select("tenant_id", "event_date", "source", "seen_at", F.explode("ids").alias("id")).select(
        "tenant_id", "event_date", "source", "seen_at", "id.*"
    )


def record_edges(records: DataFrame) -> DataFrame:
    """One row per (record, identifier after its first): src is the record's first identifier."""
    return (
        records.where(F.size("ids") > 1)
        .select(
            "tenant_id",
            "event_date",
            "source",
            "seen_at",
            F.col("ids")[0].alias("centre"),
            F.explode(F.slice("ids", 2, 1_000)).alias("leaf"),
        )
        .select(
            "tenant_id",
            "event_date",
            "source",
            "seen_at",
            F.col("centre.node_id").alias("src"),
            F.col("centre.id_type").alias("src_type"),
            F.col("leaf.node_id").alias("dst"),
            F.col("leaf.id_type").alias("dst_type"),
        )
    )
