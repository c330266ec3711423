"""The raw-file sensor: new files in the raw zone → runs for exactly the days they belong to.

Each tick lists the keys added since the cursor (the newest modification time seen, and the keys
seen at that time, since S3 times have 1-second granularity), groups them by event day, and
requests one run per day for the affected raw assets and everything downstream of them. The run
key names each (stream, newest file) so the same files never start two runs; a file arriving
late for an old day re-runs that day. Days that are not partitions yet (today) are left to the
daily schedule.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY
from partitions import daily_partitions
from sensors.schedules import lake_daily_job


@dataclass
class RawFileCursor:
    last_modified: datetime | None = None
    keys_at_last_modified: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, text: str | None) -> "RawFileCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["last_modified"]), set(data["keys"]))

    def dump(self) -> str:
        return json.dumps({"last_modified": self.last_modified.isoformat(), "keys": sorted(self.keys_at_last_modified)})

    def is_new(self, key: str, modified: datetime) -> bool:
        if self.last_modified is None or modified > self.last_modified:
            return True
        return modified == self.last_modified and key not in self.keys_at_last_modified

    def advance(self, key: str, modified: datetime) -> None:
        if self.last_modified is None or modified > self.last_modified:
            self.last_modified, self.keys_at_last_modified = modified, {key}
        elif modified == self.last_modified:
            self.keys_at_last_modified.add(key)


def run_requests_for(new_keys: list[str], asset_graph, valid_day) -> tuple[list[RunRequest], list[str]]:
    """One run request per event day among `new_keys`; and the days skipped as not (yet) partitions."""
    by_day: dict[str, dict[AssetKey, str]] = defaultdict(dict)
    for key in new_keys:
        match = RAW_KEY.match(key)
        if match:
            day = f"{match['year']}-{match['month']}-{match['day']}"
            asset_key = AssetKey(["raw", match["provider"], match["stream"]])
            by_day[day][asset_key] = max(key, by_day[day].get(asset_key, ""))
    requests, skipped = [], []
    for day, newest in sorted(by_day.items()):
        known = [asset_key for asset_key in newest if asset_graph.has(asset_key)]
        if not valid_day(day) or not known:
            skipped.append(day)
            continue
        selection = AssetSelection.assets(*known).downstream().resolve(asset_graph)
        run_key = f"{day}|" + ",".join(f"{'/'.join(k.path[1:])}@{newest[k].rsplit('/', 1)[-1]}" for k in sorted(known))
        requests.append(RunRequest(run_key=run_key, partition_key=day, asset_selection=sorted(selection)))
    return requests, skipped


@sensor(
    job=lake_daily_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts runs for the days that new raw files (on time or late) belong to.",
)
def raw_file_sensor(context: SensorEvaluationContext, lake: LakeResource):
    cursor = RawFileCursor.parse(context.cursor)
    new_keys = []
    for obj in lake.list_since("raw/", cursor.last_modified):
        if cursor.is_new(obj.key, obj.last_modified):
            new_keys.append(obj.key)
        cursor.advance(obj.key, obj.last_modified)
    if not new_keys:
        return SkipReason("no new raw files")
    partition_keys = set(daily_partitions.get_partition_keys())
    requests, skipped = run_requests_for(new_keys, context.repository_def.asset_graph, partition_keys.__contains__)
    if skipped:
        context.log.info(f"not yet partitions (left to the daily schedule) or unknown streams: {skipped}")
    return SensorResult(run_requests=requests, cursor=cursor.dump())
