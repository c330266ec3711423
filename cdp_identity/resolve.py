"""Identity resolution: from the identity graph to one stable `cdp_customer_id` per person.

1. Exclusions: identifiers matching a blocked pattern, and identifiers seen with more distinct
   people-identifiers of one type than `max_people_per_identifier`, join nothing.
2. Limits and priority: an identifier that on its own would put more identifiers of an equal or
   stronger type (`priority`) in a profile than the limit gives way. The rest are joined at once
   (large-star/small-star); a profile that still breaks a limit is rebuilt tier by tier: an edge
   belongs to the tier of its weaker end, tiers join strongest first, and a tier's edges that would
   break a limit give way (the profile keeps what stronger tiers joined).
3. Ids: a profile keeps the id it had; when profiles merge, the oldest id survives and the merge is
   recorded with the identifiers that caused it. A profile without a previous id is named after its
   earliest-seen identifier (the strongest type among those seen together), so a rebuild from
   scratch gives the same ids as incremental runs.
"""

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp_identity.components import connected_components
from cdp_identity.rules import blocked_pattern, rules_frame

MAP_COLUMNS = ["tenant_id", "node_id", "id_type", "id_value", "cdp_customer_id", "id_since", "first_seen", "last_seen"]
EXCLUSION_COLUMNS = ["tenant_id", "kind", "id_type", "id_value", "other_type", "other_value", "reason"]
MERGE_COLUMNS = ["tenant_id", "event", "cdp_customer_id", "surviving_id", "caused_by"]


@dataclass
class Resolution:
    identity_map: DataFrame  # MAP_COLUMNS: every identifier that joins a profile
    exclusions: DataFrame  # EXCLUSION_COLUMNS: blocked and shared identifiers, edges that gave way to a limit
    merges: DataFrame  # MERGE_COLUMNS: profiles merged into an older one, or split off with a new id
    rounds: list[int] = field(
        default_factory=list
    )  # connected-components rounds: all edges, then per tier of conflicts


def _both_ways(edges: DataFrame) -> DataFrame:
    """Each edge seen from both ends: (tenant_id, node, id_type, other, other_type)."""
    return edges.select(
        "tenant_id",
        F.col("src").alias("node"),
        F.col("src_type").alias("id_type"),
        F.col("dst").alias("other"),
        F.col("dst_type").alias("other_type"),
    ).union(edges.select("tenant_id", "dst", "dst_type", "src", "src_type"))


def _exclude_nodes(nodes: DataFrame, edges: DataFrame, rules: DataFrame, tenants: list[str]) -> DataFrame:
    """(tenant_id, node_id, kind, reason) for blocked and shared identifiers."""
    blocked = nodes.select(
        "tenant_id",
        "node_id",
        F.lit("blocked").alias("kind"),
        F.concat(
            F.lit("matches blocked pattern "),
            blocked_pattern(tenants, F.col("tenant_id"), F.col("id_type"), F.col("id_value")),
        ).alias("reason"),
    ).where(F.col("reason").isNotNull())
    both = _both_ways(edges).withColumnRenamed("node", "node_id").join(blocked, ["tenant_id", "node_id"], "left_anti")
    people = (
        both.groupBy("tenant_id", "node_id", "other_type")
        .agg(F.countDistinct("other").alias("people"))
        .join(rules.where("counts_people").withColumnRenamed("id_type", "other_type"), ["tenant_id", "other_type"])
        .where(F.col("people") > F.col("max_people"))
    )
    shared = (
        people.groupBy("tenant_id", "node_id")
        .agg(
            F.max_by(
                F.format_string(
                    "seen with %d distinct %s (max %d people per identifier)", "people", "other_type", "max_people"
                ),
                "people",
            ).alias("reason")
        )
        .select("tenant_id", "node_id", F.lit("shared").alias("kind"), "reason")
    )
    return blocked.union(shared)


def _limit_violations(components: DataFrame, nodes: DataFrame, rules: DataFrame) -> DataFrame:
    """(component, reason) for components holding more identifiers of a type than allowed."""
    counted = (
        components.join(nodes.select(F.col("node_id").alias("node"), "tenant_id", "id_type"), "node")
        .groupBy("tenant_id", "component", "id_type")
        .agg(F.count("*").alias("held"))
    )
    over = counted.join(rules, ["tenant_id", "id_type"]).where(F.col("held") > F.col("max_per_profile"))
    return over.groupBy("component").agg(
        F.first(F.format_string("a profile would hold %d %s (limit %d)", "held", "id_type", "max_per_profile")).alias(
            "reason"
        )
    )


def _rank_edges(edges: DataFrame, rules: DataFrame) -> DataFrame:
    """(u, v, tier): tier = the priority rank of the edge's weaker end."""
    ranks = rules.select("tenant_id", "id_type", "rank")
    return (
        edges.join(ranks.withColumnsRenamed({"id_type": "src_type", "rank": "src_rank"}), ["tenant_id", "src_type"])
        .join(ranks.withColumnsRenamed({"id_type": "dst_type", "rank": "dst_rank"}), ["tenant_id", "dst_type"])
        .select(F.col("src").alias("u"), F.col("dst").alias("v"), F.greatest("src_rank", "dst_rank").alias("tier"))
    )


def _local_culprits(edges: DataFrame, rules: DataFrame) -> DataFrame:
    """(node, reason): identifiers that on their own would put more identifiers of an equal or stronger
    type in one profile than its limit (a store inbox on two Shopify customers): their edges give way."""
    ranks = rules.select("tenant_id", "id_type", "rank", "max_per_profile")
    counted = (
        _both_ways(edges)
        .groupBy("tenant_id", "node", "id_type", "other_type")
        .agg(F.countDistinct("other").alias("held"))
        .join(ranks.select("tenant_id", "id_type", "rank"), ["tenant_id", "id_type"])
        .join(ranks.withColumnsRenamed({"id_type": "other_type", "rank": "other_rank"}), ["tenant_id", "other_type"])
    )
    over = counted.where((F.col("other_rank") <= F.col("rank")) & (F.col("held") > F.col("max_per_profile")))
    return over.groupBy("node").agg(
        F.first(
            F.format_string("would join %d %s in one profile (limit %d)", "held", "other_type", "max_per_profile")
        ).alias("reason")
    )


def _touching(edges: DataFrame, flagged: DataFrame) -> DataFrame:
    """(src, dst, reason) for the edges (u, v) with an end in `flagged` (node, reason)."""
    return (
        edges.join(flagged.withColumnRenamed("node", "u"), "u")
        .select("u", "v", "reason")
        .union(edges.join(flagged.withColumnRenamed("node", "v"), "v").select("u", "v", "reason"))
        .dropDuplicates(["u", "v"])
        .withColumnsRenamed({"u": "src", "v": "dst"})
    )


def _by_tiers(
    spark: SparkSession, ranked: DataFrame, nodes: DataFrame, rules: DataFrame
) -> tuple[DataFrame, DataFrame, list[int]]:
    """Components of `ranked` edges joined tier by tier, strongest first; a tier's edges in a profile it
    would push past a limit give way (the profile keeps what stronger tiers joined). Returns
    (node, component), the (src, dst, reason) of edges that gave way, and the rounds taken."""
    accepted = spark.createDataFrame([], "u bigint, v bigint")
    gave_way = spark.createDataFrame([], "src bigint, dst bigint, reason string")
    components, rounds = None, []
    for tier in sorted(r.tier for r in ranked.select("tier").distinct().collect()):
        joining = ranked.where(F.col("tier") == tier).select("u", "v").localCheckpoint()
        components, taken = connected_components(accepted.union(joining))
        rounds.append(taken)
        violations = _limit_violations(components, nodes, rules).localCheckpoint()
        if not violations.isEmpty():
            rejected = (
                joining.join(components.join(violations, "component").withColumnRenamed("node", "u"), "u")
                .select(F.col("u").alias("src"), F.col("v").alias("dst"), "reason")
                .localCheckpoint()
            )
            gave_way = gave_way.union(rejected)
            joining = joining.join(rejected.withColumnsRenamed({"src": "u", "dst": "v"}), ["u", "v"], "left_anti")
            components, taken = connected_components(accepted.union(joining))
            rounds.append(taken)
        accepted = accepted.union(joining).localCheckpoint()
        components = components.localCheckpoint()
    return components, gave_way, rounds


def _components(
    spark: SparkSession, nodes: DataFrame, edges: DataFrame, rules: DataFrame
) -> tuple[DataFrame, DataFrame, list[int]]:
    """(node, component) for every node of `edges`, the edges that gave way to a limit, and the rounds taken.
    Edges of identifiers that break a limit on their own give way first; the rest are joined at once,
    and only profiles that still break a limit are rebuilt tier by tier."""
    ranked = _rank_edges(edges, rules)
    local = _touching(ranked, _local_culprits(edges, rules)).localCheckpoint()
    ranked = ranked.join(local.withColumnsRenamed({"src": "u", "dst": "v"}), ["u", "v"], "left_anti").localCheckpoint()
    components, taken = connected_components(ranked)
    components = components.localCheckpoint()
    conflicted = (
        components.join(_limit_violations(components, nodes, rules), "component").select("node").localCheckpoint()
    )
    if conflicted.isEmpty():
        return components, local, [taken]
    rebuilt, gave_way, rounds = _by_tiers(
        spark, ranked.join(conflicted.withColumnRenamed("node", "u"), "u"), nodes, rules
    )
    return components.join(conflicted, "node", "left_anti").union(rebuilt), local.union(gave_way), [taken, *rounds]


def _assign_ids(labelled: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Adds cdp_customer_id and id_since to (tenant_id, node_id, id_type, id_value, first_seen, rank, component) rows."""
    earliest = labelled.groupBy("component").agg(
        F.min(F.struct("first_seen", "rank", "node_id", "tenant_id", "id_type", "id_value")).alias("e")
    )
    fresh = earliest.select(
        "component",
        F.concat(
            F.lit("cdp_"), F.substring(F.sha2(F.concat_ws("|", "e.tenant_id", "e.id_type", "e.id_value"), 256), 1, 20)
        ).alias("fresh_id"),
        F.col("e.first_seen").alias("component_since"),
        F.col("e.node_id").alias("earliest_node"),
    )
    if previous is None:
        return (
            labelled.join(fresh, "component")
            .withColumnRenamed("fresh_id", "cdp_customer_id")
            .withColumnRenamed("component_since", "id_since")
            .drop("earliest_node")
        )
    held = labelled.join(
        previous.select(
            "tenant_id", "node_id", F.col("cdp_customer_id").alias("prev_id"), F.col("id_since").alias("prev_since")
        ),
        ["tenant_id", "node_id"],
    )
    survivor = (
        held.groupBy("component")
        .agg(F.min(F.struct("prev_since", "prev_id")).alias("s"))
        .select("component", F.col("s.prev_id").alias("prev_id"), F.col("s.prev_since").alias("prev_since"))
    )
    # A profile that split keeps its id in the part with the earliest identifier; the other parts get new ids.
    choice = fresh.join(survivor, "component", "left").withColumn(
        "keeps", F.row_number().over(Window.partitionBy("prev_id").orderBy("component_since", "earliest_node")) == 1
    )
    ids = choice.select(
        "component",
        F.when(F.col("prev_id").isNotNull() & F.col("keeps"), F.col("prev_id"))
        .otherwise(F.col("fresh_id"))
        .alias("cdp_customer_id"),
        F.when(F.col("prev_id").isNotNull() & F.col("keeps"), F.col("prev_since"))
        .otherwise(F.col("component_since"))
        .alias("id_since"),
    )
    return labelled.join(ids, "component")


def _merges(assigned: DataFrame, previous: DataFrame | None, edges: DataFrame) -> DataFrame | None:
    """Previous ids that are no longer a profile's id: merged into an older profile, or split off."""
    if previous is None:
        return None
    before = previous.select("tenant_id", "node_id", F.col("cdp_customer_id").alias("prev_id"))
    now = assigned.select("tenant_id", "node_id", "cdp_customer_id", "id_type", "id_value")
    moved = (
        now.join(before, ["tenant_id", "node_id"])
        .where(F.col("prev_id") != F.col("cdp_customer_id"))
        .select("tenant_id", "prev_id", "cdp_customer_id")
        .distinct()
    )
    # The identifiers that caused a merge: those that touch identifiers of two or more previous profiles.
    neighbours = (
        _both_ways(edges)
        .select("tenant_id", F.col("node").alias("node_id"), "other")
        .join(before.withColumnRenamed("node_id", "other"), ["tenant_id", "other"])
        .select("tenant_id", "node_id", "prev_id")
        .union(before.select("tenant_id", "node_id", "prev_id"))
    )
    bridges = (
        neighbours.groupBy("tenant_id", "node_id")
        .agg(F.countDistinct("prev_id").alias("profiles"))
        .where("profiles > 1")
        .join(now, ["tenant_id", "node_id"])
        .groupBy("tenant_id", "cdp_customer_id")
        .agg(F.slice(F.sort_array(F.collect_set(F.concat_ws(":", "id_type", "id_value"))), 1, 20).alias("caused_by"))
    )
    return moved.join(bridges, ["tenant_id", "cdp_customer_id"], "left").select(
        "tenant_id",
        F.when(F.col("caused_by").isNull(), "split").otherwise("merged").alias("event"),
        F.col("prev_id").alias("cdp_customer_id"),
        F.col("cdp_customer_id").alias("surviving_id"),
        F.coalesce("caused_by", F.array().cast("array<string>")).alias("caused_by"),
    )


def resolve(spark: SparkSession, nodes: DataFrame, edges: DataFrame, previous: DataFrame | None = None) -> Resolution:
    """Resolve the identity graph.

    nodes: (tenant_id, node_id, id_type, id_value, first_seen, last_seen), one row per identifier;
    edges: (tenant_id, src, dst, src_type, dst_type), one row per joined pair;
    previous: the last identity map (MAP_COLUMNS) or None.
    """
    tenants = sorted(r.tenant_id for r in nodes.select("tenant_id").distinct().collect())
    rules = rules_frame(spark, tenants)
    excluded = _exclude_nodes(nodes, edges, rules, tenants).localCheckpoint()
    kept_nodes = nodes.join(excluded, ["tenant_id", "node_id"], "left_anti")
    kept_edges = edges.join(
        excluded.select("tenant_id", F.col("node_id").alias("src")), ["tenant_id", "src"], "left_anti"
    ).join(excluded.select("tenant_id", F.col("node_id").alias("dst")), ["tenant_id", "dst"], "left_anti")
    components, gave_way, rounds = _components(spark, kept_nodes, kept_edges, rules)
    labelled = (
        kept_nodes.join(components.withColumnRenamed("node", "node_id"), "node_id", "left")
        .withColumn("component", F.coalesce("component", "node_id"))
        .join(rules.select("tenant_id", "id_type", "rank"), ["tenant_id", "id_type"])
    )
    assigned = _assign_ids(labelled, previous).localCheckpoint()
    identity_map = assigned.select(*MAP_COLUMNS)

    described = nodes.select("tenant_id", "node_id", "id_type", "id_value")
    node_exclusions = excluded.join(described, ["tenant_id", "node_id"]).select(
        "tenant_id",
        "kind",
        "id_type",
        "id_value",
        F.lit(None).cast("string").alias("other_type"),
        F.lit(None).cast("string").alias("other_value"),
        "reason",
    )
    edge_exclusions = (
        gave_way.join(described.withColumnRenamed("node_id", "src"), "src")
        .join(
            described.select(
                F.col("node_id").alias("dst"),
                F.col("id_type").alias("other_type"),
                F.col("id_value").alias("other_value"),
            ),
            "dst",
        )
        .select("tenant_id", F.lit("limit").alias("kind"), "id_type", "id_value", "other_type", "other_value", "reason")
    )
    merges = _merges(assigned, previous, kept_edges)
    if merges is None:
        merges = spark.createDataFrame(
            [], "tenant_id string, event string, cdp_customer_id string, surviving_id string, caused_by array<string>"
        )
    return Resolution(
        identity_map,
        node_exclusions.union(edge_exclusions).select(*EXCLUSION_COLUMNS),
        merges.select(*MERGE_COLUMNS),
        rounds,
    )
