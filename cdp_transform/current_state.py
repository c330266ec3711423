"""Current-state tables (`EntitySpec.current_state`, the generic tables): one row per (tenant, key)
across every day, its newest version, however the days are curated (one run over many days, day by
day in any order, an older day again).

A run's rows are first deduplicated per key and event day as every table's are
(`cdp_transform/dedup.py`). `supersede` then ranks each key's rows that passed the critical rules
against one another (across the run's days) and against the rows the table stores for the other
days: newest by the spec's `newest_first` fields, then the latest delivery (`_ingest_ts`, then
the raw file's path, as `latest_version` orders them), then the later day. A run row that is not
first is `_superseded` (counted with the duplicates, never written); a stored row that is not
first is removed from its day when the run's rows are written (`replace_current_state` in
`cdp_resources/delta_tables.py`, one MERGE). Ranking only valid rows means a newer version that
fails a critical rule does not hide the older valid one, whichever day is curated first.
"""

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdp_transform.entities import EntitySpec
from cdp_transform.lineage import RunLineage

STORED = "_stored"  # a row of the table's other days, ranked beside the run's rows


def supersede(spec: EntitySpec, ruled: DataFrame, lineage: RunLineage, others: DataFrame | None) -> DataFrame:
    """`ruled` (the run's ruled rows) with `_superseded`, and with `STORED` rows: the rows of
    `others` (the table's rows of the days outside the run), each with `_superseded` too. Callers
    keep `~STORED` as the run's rows and count `STORED & _superseded` per day as the rows the
    write removes."""
    valid = F.size("_critical") == 0
    rows = ruled.select("*", lineage.source_file().alias("_path"), valid.alias("_valid"), F.lit(False).alias(STORED))
    if others is not None:
        stored = others.select(
            "tenant_id",
            "event_date",
            *spec.key,
            *spec.newest_first,
            "_ingest_ts",
            F.col("_source_file").alias("_path"),
            F.lit(True).alias("_valid"),
            F.lit(True).alias(STORED),
        )
        rows = rows.unionByName(stored, allowMissingColumns=True)
    order = [F.col(c).desc_nulls_last() for c in spec.newest_first]
    order += [F.col("_ingest_ts").desc(), F.col("_path").desc(), F.col("event_date").desc()]
    # Invalid rows rank among themselves, apart: they are dead letters whatever their rank.
    newest = Window.partitionBy("tenant_id", *spec.key, "_valid").orderBy(*order)
    return rows.withColumn("_superseded", F.col("_valid") & (F.row_number().over(newest) > 1)).drop("_path", "_valid")


def superseded_stored(ranked: DataFrame) -> dict[str, int]:
    """Per day: the stored rows of other days that the run's rows supersede."""
    removed = ranked.where(F.col(STORED) & F.col("_superseded")).groupBy("event_date").count().collect()
    return {str(row.event_date): row["count"] for row in sorted(removed)}
