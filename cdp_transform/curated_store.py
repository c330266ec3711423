"""The curated zone in the lake: reading a curated table's days and its dead letters, and the
settings its dead-letter tables are written with (`cdp_resources/lake_paths.py` says where they live)."""

import functools
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession

from cdp_resources.delta_tables import read_days
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import curated_path, dead_letter_path
from cdp_transform.generic import CURATED_ENTITIES
from cdp_transform.pipeline import DEAD_LETTER_COLUMNS

DEAD_LETTER_FILTER_COLUMNS = ["tenant_id", "rule"]
DEAD_LETTER_DICTIONARY_COLUMNS = [c for c in DEAD_LETTER_COLUMNS if c != "record"]


def read_curated(
    spark: SparkSession, lake: LakeResource, table: str, first: date | None, last: date
) -> DataFrame | None:
    """Rows of curated `table` with event_date in first..last (from the beginning when first is None)."""
    return read_days(spark, lake, curated_path(table), first, last)


def read_dead_letters(spark: SparkSession, lake: LakeResource, tables: list[str] | None = None) -> DataFrame | None:
    """The dead letters of `tables` (default: every curated table) in one frame; None when none
    of them has a dead-letter table yet (the first run with a dead letter creates it)."""
    paths = [dead_letter_path(t) for t in tables or [spec.table for spec in CURATED_ENTITIES]]
    frames = [spark.read.format("delta").load(lake.spark_path(p)) for p in paths if lake.is_delta_table(p)]
    return functools.reduce(DataFrame.unionByName, frames) if frames else None


def may_hold_dead_letters(lake: LakeResource, table: str, first: date, last: date) -> bool:
    """Whether `table`'s dead-letter table may hold rows of days first..last: a file lies under one
    of those partitions' directories (Delta writes a partition's files there). A lake listing, no
    Delta snapshot (seconds a table); a removed file not yet vacuumed only costs an empty replace."""
    days = {f"event_date={first + timedelta(days=offset)}" for offset in range((last - first).days + 1)}
    return any(o.key.split("/")[-2] in days for o in lake.list(f"{dead_letter_path(table)}/event_date="))
