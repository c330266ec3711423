"""One entity's curation in Spark: deduplicate → conform → enrich → flag → quality rules.

`curate` returns the ruled rows (each with its failed critical and warning rules and the number of
raw rows it stands for); `split` makes the curated rows and the dead letters from them;
`partition_stats` counts, per event day, what came in, what was a duplicate, what failed which
rule. Only aggregates reach the driver.
"""

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdp_transform.conform import conform, keep_record_where, typed_value
from cdp_transform.dedup import latest_version
from cdp_transform.enrich import company_by_domain, to_usd
from cdp_transform.entities import EntitySpec
from cdp_transform.lineage import CARRIED, RunLineage
from cdp_transform.rules import CRITICAL, apply_rules, reasons

DEAD_LETTER_COLUMNS = [
    "table",
    "tenant_id",
    "event_date",
    "rule",
    "rules",
    "reason",
    "record",
    "_source_file",
    "_ingest_ts",
    "_run_id",
]


@dataclass
class DayStats:
    rows_in: int = 0
    rows_after_dedup: int = 0
    dead_lettered: int = 0
    with_warnings: int = 0  # curated rows that failed a warning rule
    critical: dict = field(default_factory=dict)
    warnings: dict = field(default_factory=dict)
    superseded: int = 0  # a current-state table's rows that a newer version of their key replaces

    @property
    def duplicates(self) -> int:
        """Rows in that are not curated nor dead-lettered: copies of one version, older versions."""
        return self.rows_in - self.rows_after_dedup + self.superseded

    @property
    def curated(self) -> int:
        return self.rows_after_dedup - self.dead_lettered - self.superseded


def flag_shared_email(frame: DataFrame, id_column: str, earlier: DataFrame | None = None) -> DataFrame:
    """Adds _email_shared: another `id_column` has the row's email on its event day or before, in
    `frame` or in the `earlier` rows of the table (so one run over many days and day-by-day runs
    agree). One running window per (tenant, email) over the rows and the earlier owners: the email
    is shared when the smallest and largest owner so far differ."""
    rows = frame.withColumn("_earlier", F.lit(False))
    if earlier is not None:
        owners = earlier.where(F.col("email").isNotNull()).select(
            "tenant_id", "email", "event_date", id_column, F.lit(True).alias("_earlier")
        )
        rows = rows.unionByName(owners, allowMissingColumns=True)
    so_far = (
        Window.partitionBy("tenant_id", "email")
        .orderBy("event_date")
        .rangeBetween(Window.unboundedPreceding, Window.currentRow)
    )
    shared = F.col("email").isNotNull() & (F.min(id_column).over(so_far) != F.max(id_column).over(so_far))
    return rows.withColumn("_email_shared", F.coalesce(shared, F.lit(False))).where(~F.col("_earlier")).drop("_earlier")


def flag_known_customer(frame: DataFrame, customers: DataFrame | None) -> DataFrame:
    if customers is None:
        return frame.withColumn("_customer_known", F.lit(False))
    known = customers.select("tenant_id", "customer_id").distinct().withColumn("_customer_known", F.lit(True))
    return frame.join(known, ["tenant_id", "customer_id"], "left").fillna(False, ["_customer_known"])


def curate(
    spec: EntitySpec,
    raw: DataFrame,
    fx_rates: DataFrame | None = None,
    customers: DataFrame | None = None,
    earlier: DataFrame | None = None,
    companies: DataFrame | None = None,
) -> DataFrame:
    """The ruled rows (deduplicated, typed, enriched, with `_critical`, `_warnings` and `_copies`)
    for `raw` rows with lineage columns; `earlier`: the table's rows before these days (for the
    unique-email flag); `companies`: the tenants' company references (`read_company_references`),
    for a spec with `company_from`. The raw rows are deduplicated on their typed key and version fields before
    the rest is typed, so the shuffle carries each record once, and `_raw` is kept only on the rows
    that fail a critical rule (the dead letters' record)."""
    if spec.explode:
        raw = raw.withColumn("line", F.explode(spec.explode)).drop(spec.explode)
    fields = {f.name: f for f in spec.fields}
    latest = latest_version(
        raw, [typed_value(fields[c]) for c in spec.key], [typed_value(fields[c]) for c in spec.newest_first]
    )
    rows = conform(latest, spec.fields, carry=("_copies",))
    if spec.company_from:
        rows = company_by_domain(rows, spec.company_from, companies)
    if spec.usd:
        amount, currency, output = spec.usd
        rows = to_usd(rows, fx_rates, amount, currency, output)
    if spec.email_unique_per:
        rows = flag_shared_email(rows, spec.email_unique_per, earlier)
    if spec.customer_must_exist:
        rows = flag_known_customer(rows, customers)
    ruled = apply_rules(rows, spec.rules)
    return keep_record_where(ruled, F.size("_critical") > 0)


def split(spec: EntitySpec, ruled: DataFrame, lineage: RunLineage) -> tuple[DataFrame, DataFrame]:
    """(curated rows: no critical failure, helper columns dropped; dead letters: one row per record),
    each with its lineage columns restored from `lineage` (`RunLineage.restore`)."""
    helpers = [c for c in ruled.columns if c.startswith("_") and c not in CARRIED]
    keep = F.size("_critical") == 0
    if "_superseded" in ruled.columns:
        keep &= ~F.col("_superseded")
    curated = (
        ruled.where(keep)
        .withColumnRenamed("_warnings", "quality_warnings")
        .drop(*[c for c in helpers if c != "_warnings"])
    )
    why = F.create_map(*(F.lit(x) for pair in reasons(spec.rules).items() for x in pair))
    dead = lineage.restore(ruled.where(F.size("_critical") > 0)).select(
        F.lit(spec.table).alias("table"),
        "tenant_id",
        "event_date",
        F.col("_critical")[0].alias("rule"),
        F.col("_critical").alias("rules"),
        F.array_join(F.transform("_critical", lambda r: F.concat(r, F.lit(": "), F.element_at(why, r))), "; ").alias(
            "reason"
        ),
        F.to_json("_raw").alias("record"),
        "_source_file",
        "_ingest_ts",
        "_run_id",
    )
    return lineage.restore(curated), dead


def partition_stats(spec: EntitySpec, ruled: DataFrame) -> dict[str, DayStats]:
    """Per event day, in one aggregation over the ruled rows: rows in (the rows each kept row
    stands for), rows after dedup, dead letters, rows with warnings, failures per rule, and the
    rows superseded by a newer version (with `_superseded`, a current-state table's)."""
    dead = F.size("_critical") > 0
    superseded = F.col("_superseded") if "_superseded" in ruled.columns else F.lit(False)
    failed = [(rule, "_critical" if rule.severity == CRITICAL else "_warnings") for rule in spec.rules]
    summary = ruled.groupBy("event_date").agg(
        F.sum("_copies").alias("rows_in"),
        F.count(F.lit(1)).alias("n"),
        F.sum(dead.cast("int")).alias("dead"),
        F.sum((~dead & ~superseded & (F.size("_warnings") > 0)).cast("int")).alias("warned"),
        F.sum(superseded.cast("int")).alias("superseded"),
        *(
            F.sum(F.array_contains(column, rule.name).cast("int")).alias(f"rule_{i}")
            for i, (rule, column) in enumerate(failed)
        ),
    )
    stats: dict[str, DayStats] = {}
    for row in summary.collect():
        day = stats[str(row.event_date)] = DayStats(row.rows_in, row.n, row.dead, row.warned)
        day.superseded = row.superseded
        for i, (rule, column) in enumerate(failed):
            if row[f"rule_{i}"]:
                (day.critical if column == "_critical" else day.warnings)[rule.name] = row[f"rule_{i}"]
    return stats
