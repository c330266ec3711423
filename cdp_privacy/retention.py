"""Retention: per tenant, how long the raw zone, dead letters, audience exports and activation's
dead letters are kept, and how much Delta history; what is older is deleted by the weekly
maintenance job (`cdp_assets/maintenance.py`), which reports what each run removed.

Periods come from `retention.yaml` (or `CDP_RETENTION_FILE`): `defaults`, overridden per tenant.
A period shorter than the late-data window (`CDP_LATE_DAYS`: runs re-read a day's raw files that
many days after it) is refused with an error naming the tenant and the period. Ages count from
the day in a file's path: the event day for raw files and dead letters, the export date for
exports. The latest export of each audience is kept whatever its age: the next sync diffs against
it. The Delta tables are shared by the tenants, so VACUUM keeps the shortest history any tenant
asks for (a tenant's shorter period must hold; a longer one is a maximum, not a promise).
"""

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, fields
from datetime import date, timedelta
from pathlib import Path

import yaml

from cdp_common.dead_letters import DLQ_KEY
from cdp_ingest.manifests import manifest_key
from cdp_privacy.lake_files import ACTIVATION_PROVIDER
from cdp_resources.lake import LakeResource
from cdp_resources.names import checked_name
from cdp_resources.raw_zone import RAW_KEY
from partitions import late_days

DEFAULT_FILE = Path(__file__).with_name("retention.yaml")
EXPORT_DATE = re.compile(r"^(?P<audience>.*/)date=(?P<day>\d{4}-\d{2}-\d{2})/")


class RetentionError(ValueError):
    """A retention period that cannot be applied (shorter than the late-data window, or unknown)."""


@dataclass(frozen=True)
class Retention:
    raw_days: int
    dead_letter_days: int
    audience_export_days: int
    activation_dead_letter_days: int
    delta_version_hours: float

    def check(self, tenant: str, window_days: int) -> "Retention":
        for period in ("raw_days", "dead_letter_days", "audience_export_days", "activation_dead_letter_days"):
            if getattr(self, period) <= window_days:
                raise RetentionError(
                    f"retention {period}={getattr(self, period)} for {tenant} is not longer than the late-data "
                    f"window (CDP_LATE_DAYS={window_days}): records of those days can still arrive and be re-read"
                )
        if self.delta_version_hours < 24 * window_days:
            raise RetentionError(
                f"retention delta_version_hours={self.delta_version_hours} for {tenant} is shorter than the "
                f"late-data window (CDP_LATE_DAYS={window_days} days)"
            )
        return self


def policies(path: str | Path | None = None, tenants: list[str] = ()) -> dict[str, Retention]:
    """Each tenant's periods (the tenants the file names, and `tenants`), checked against the
    late-data window; `*` holds the defaults."""
    config = yaml.safe_load(Path(path or os.environ.get("CDP_RETENTION_FILE") or DEFAULT_FILE).read_text())
    known = {f.name for f in fields(Retention)}
    defaults = config.get("defaults") or {}
    window = late_days()
    result = {}
    for tenant, overrides in {"*": {}, **{t: {} for t in tenants}, **(config.get("tenants") or {})}.items():
        unknown = set(defaults) - known | set(overrides or {}) - known
        if unknown:
            raise RetentionError(f"unknown retention periods {sorted(unknown)}; known: {sorted(known)}")
        if tenant != "*":
            checked_name("tenant", tenant)
        result[tenant] = Retention(**{**defaults, **(overrides or {})}).check(tenant, window)
    return result


def _cutoff(policy: dict[str, Retention], tenant: str, period: str, today: date) -> date:
    return today - timedelta(days=getattr(policy.get(tenant, policy["*"]), period))


def apply_retention(lake: LakeResource, policy: dict[str, Retention], today: date) -> dict:
    """Delete what is older than each tenant's periods; files and records removed per zone."""
    removed = Counter()
    manifests: dict[str, set[str]] = {}
    for obj in lake.list("raw/"):
        match = RAW_KEY.match(obj.key)
        day = date(int(match["year"]), int(match["month"]), int(match["day"])) if match else None
        if day and day < _cutoff(policy, match["tenant"], "raw_days", today):
            lake.delete(obj.key)
            removed["raw_files"] += 1
            manifests.setdefault(manifest_key(match["provider"], match["stream"], day.isoformat()), set()).add(obj.key)
    for key, gone in manifests.items():  # the manifests no longer list files that are gone
        if lake.list(key):
            manifest = json.loads(lake.read_bytes(key))
            manifest["files"] = [e for e in manifest["files"] if e["key"] not in gone]
            lake.write_bytes(key, json.dumps(manifest, indent=1).encode())
    for obj in lake.list("dlq/"):
        match = DLQ_KEY.match(obj.key)
        if not match:
            continue
        activation = match["provider"] == ACTIVATION_PROVIDER
        period = "activation_dead_letter_days" if activation else "dead_letter_days"
        if date.fromisoformat(match["day"]) < _cutoff(policy, match["tenant"], period, today):
            lake.delete(obj.key)
            removed["activation_dead_letter_files" if activation else "dead_letter_files"] += 1
    for prefix, depth in (("audiences/", 1), ("exports/", 2)):  # tenant is the 2nd or 3rd part of the key
        latest: dict[str, str] = {}
        dated = []
        for obj in lake.list(prefix):
            match = EXPORT_DATE.match(obj.key)
            if match:
                latest[match["audience"]] = max(latest.get(match["audience"], ""), match["day"])
                dated.append((obj.key, match["audience"], match["day"]))
        for key, audience, day in dated:
            tenant = key.split("/")[depth]
            if day != latest[audience] and date.fromisoformat(day) < _cutoff(
                policy, tenant, "audience_export_days", today
            ):
                lake.delete(key)
                removed["export_files"] += 1
    return dict(removed)


def delta_retention_hours(policy: dict[str, Retention]) -> float:
    """The Delta history VACUUM keeps: the shortest any tenant asks for."""
    return min(p.delta_version_hours for p in policy.values())
