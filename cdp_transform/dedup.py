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
    rows = frame.withColumn("_keyless", F.when(reduce(or_, (k.isNull() for k in key)), F.monotonically_increasing_id()))
    order = [v.desc_nulls_last() for v in newest_first] + [F.col("_ingest_ts").desc(), F.col("_file").desc()]
    # The window's own expressions: a key that is a raw column as it is (events' message_id) is
    # not copied into another column that the shuffle would carry too.
    window = Window.partitionBy(*key, "tenant_id", "event_date", "_keyless").orderBy(*order)
    whole = window.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return (
        rows.select("*", F.row_number().over(window).alias("_rank"), F.count(F.lit(1)).over(whole).alias("_copies"))
        .where("_rank = 1")
        .drop("_rank", "_keyless")
    )
