"""Daily partitions (UTC) for every dated asset, and the late-data window.

`CDP_START_DATE` (default 2026-01-01) is the first partition; `CDP_LATE_DAYS` (default 3) is how
many days after its event day a record may still arrive (and so how far back runs re-open days).
A run over several days carries the first and last day in the two range tags below (Dagster's
single-run backfill tags), which every asset of the graph reads as its partition window.
"""

import os

from dagster import DailyPartitionsDefinition

DEFAULT_START_DATE = "2026-01-01"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def start_date() -> str:
    return os.environ.get("CDP_START_DATE", DEFAULT_START_DATE)


def late_days() -> int:
    return int(os.environ.get("CDP_LATE_DAYS", "3"))


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over the days `first`..`last` (partition keys)."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


daily_partitions = DailyPartitionsDefinition(start_date=start_date(), timezone="UTC")
