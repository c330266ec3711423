"""Daily partitions (UTC) for every dated asset, and the late-data window.

`CDP_START_DATE` (default 2026-01-01) is the first partition; `CDP_LATE_DAYS` (default 3) is how
many days after its event day a record may still arrive.
"""

import os
from datetime import date, timedelta

from dagster import DailyPartitionsDefinition, TimeWindowPartitionMapping

DEFAULT_START_DATE = "2026-01-01"


def start_date() -> str:
    return os.environ.get("CDP_START_DATE", DEFAULT_START_DATE)


def late_days() -> int:
    return int(os.environ.get("CDP_LATE_DAYS", "3"))


daily_partitions = DailyPartitionsDefinition(start_date=start_date(), timezone="UTC")

# An event-date partition D is fed by the raw (arrival-date) partitions D … D + late_days.
arrival_window_mapping = TimeWindowPartitionMapping(
    start_offset=0, end_offset=late_days(), allow_nonexistent_upstream_partitions=True
)


def day_range(first: date, days: int) -> list[date]:
    return [first + timedelta(days=offset) for offset in range(days)]
