"""Per-tenant sanity bounds on event dates (`date_bounds.yaml`, or the file `CDP_DATE_BOUNDS_FILE`
names): the earliest date a record may carry. Unset, it follows the partitions' start, so moving
`CDP_START_DATE` back for a tenant with older history moves the bound with it."""

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml
from pyspark.sql import Column
from pyspark.sql import functions as F

from partitions import late_days, start_date

BOUNDS_FILE = Path(__file__).parent / "date_bounds.yaml"
EARLIEST_COLUMN = "_earliest_ts"


def _declared() -> dict:
    path = os.environ.get("CDP_DATE_BOUNDS_FILE") or BOUNDS_FILE
    with open(path) as handle:
        declared = yaml.safe_load(handle) or {}
    for tenant, bounds in declared.items():
        if not isinstance(bounds, dict) or set(bounds) - {"earliest"}:
            raise ValueError(f"{path}: {tenant!r} must be a mapping with at most the key 'earliest'")
    return declared


def default_earliest() -> date:
    """The first partition less the late-data window: the oldest event day the first partition holds."""
    return date.fromisoformat(start_date()) - timedelta(days=late_days())


def earliest_dates() -> tuple[date, dict[str, date]]:
    """(the default earliest event date, each configured tenant's own)."""
    declared = _declared()

    def parse(bounds: dict, fallback: date) -> date:
        value = (bounds or {}).get("earliest")
        return date.fromisoformat(str(value)) if value is not None else fallback

    default = parse(declared.get("default"), default_earliest())
    return default, {t: parse(b, default) for t, b in declared.items() if t != "default"}


def earliest_timestamp(tenant_column: str = "tenant_id") -> Column:
    """Per row, midnight UTC of its tenant's earliest event date (read when the run plans its job,
    so a changed file applies to the next run)."""
    default, per_tenant = earliest_dates()

    def midnight(day: date) -> Column:
        return F.lit(datetime.combine(day, datetime.min.time(), UTC))

    column = midnight(default)
    for tenant, day in per_tenant.items():
        column = F.when(F.col(tenant_column) == tenant, midnight(day)).otherwise(column)
    return column
