"""Deduplication of at-least-once deliveries and repeated versions: one row per natural key."""

from functools import reduce
from operator import or_

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def latest_version(frame: DataFrame, key: list[Column], newest_first: list[Column]) -> DataFrame:
    """One row per (key, tenant, day): the latest by `newest_first`, then the latest delivery
    (`_ingest_ts`, then the last raw file in path order, `_file`), so identical redeliveries collapse
    to one. `key` and `newest_first` are expressions over `frame` (the typed key and version fields),
    so the raw rows are deduplicated before the rest is typed. `_copies` counts the rows each kept
    row stands for. A row missing a key value matches no other and is kept on its own (a quality
    rule routes it), so records without ids are never counted as duplicates. The key leads the
    sort, so most comparisons end at its first bytes."""
    keys = [f"_key_{i}" for i in range(len(key))]
    versions = [f"_version_{i}" for i in range(len(newest_first))]
    rows = frame.select("*", *(k.alias(name) for k, name in zip(key, keys)), *(v.alias(name) for v, name in zip(newest_first, versions)))
    rows = rows.withColumn("_keyless", F.when(reduce(or_, (F.col(k).isNull() for k in keys)), F.monotonically_increasing_id()))
    order = [F.col(v).desc_nulls_last() for v in versions] + [F.col("_ingest_ts").desc(), F.col("_file").desc()]
    window = Window.partitionBy(*keys, "tenant_id", "event_date", "_keyless").orderBy(*order)
    whole = window.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return (rows.select("*", F.row_number().over(window).alias("_rank"), F.count(F.lit(1)).over(whole).alias("_copies"))
            .where("_rank = 1").drop("_rank", "_keyless", *keys, *versions))
