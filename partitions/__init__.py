"""Daily partitions (UTC) for every dated asset, and the late-data window.

`CDP_START_DATE` (default 2026-01-01) is the first partition; `CDP_LATE_DAYS` (default 3) is how
many days after its event day a record may still arrive (and so how far back runs re-open days).
"""

import os

from dagster import DailyPartitionsDefinition

DEFAULT_START_DATE = "2026-01-01"


def start_date() -> str:
    return os.environ.get("CDP_START_DATE", DEFAULT_START_DATE)


def late_days() -> int:
    return int(os.environ.get("CDP_LATE_DAYS", "3"))


daily_partitions = DailyPartitionsDefinition(start_date=start_date(), timezone="UTC")
