"""Raw assets: one per provider stream, daily-partitioned by the day files landed in the raw zone.

Materialising a partition takes stock of that day's files for every tenant: it writes a manifest
(`manifests/raw/{provider}/{stream}/{day}.json`: each file's key, bytes and record count) that
downstream Spark assets read, so a curated run reads exactly the files the raw run saw.
"""

import gzip
import json
from collections import Counter

from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy, MaterializeResult, MetadataValue, asset

from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY
from partitions import daily_partitions

RAW_OWNERS = ["team:data-platform"]


def manifest_key(provider: str, stream: str, day: str) -> str:
    return f"manifests/raw/{provider}/{stream}/{day}.json"


def build_manifests(lake: LakeResource, provider: str, stream: str, days: list[str]) -> dict[str, dict]:
    """For each day, the files of `provider/stream` that landed on it (all tenants), with record counts."""
    manifests = {day: {"provider": provider, "stream": stream, "day": day, "files": []} for day in days}
    for obj in lake.list("raw/"):
        match = RAW_KEY.match(obj.key)
        if not match or (match["provider"], match["stream"]) != (provider, stream):
            continue
        day = f"{match['year']}-{match['month']}-{match['day']}"
        if day in manifests:
            records = gzip.decompress(lake.read_bytes(obj.key)).count(b"\n")
            manifests[day]["files"].append({"key": obj.key, "tenant": match["tenant"], "bytes": obj.size, "records": records})
    return manifests


def read_manifest(lake: LakeResource, provider: str, stream: str, day: str) -> dict | None:
    key = manifest_key(provider, stream, day)
    if not lake.list(key):
        return None
    return json.loads(lake.read_bytes(key))


def raw_stream_asset(provider: str, stream: str, description: str) -> AssetsDefinition:
    """The raw asset of one provider stream (key `raw/{provider}/{stream}`)."""

    @asset(
        key=["raw", provider, stream],
        group_name="raw",
        owners=RAW_OWNERS,
        kinds={"ndjson", "s3"},
        description=description,
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        tags={"layer": "raw", "provider": provider},
    )
    def _raw(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
        totals, tenants = Counter(), Counter()
        for day, manifest in build_manifests(lake, provider, stream, context.partition_keys).items():
            lake.write_bytes(manifest_key(provider, stream, day), json.dumps(manifest, indent=1).encode())
            for entry in manifest["files"]:
                totals["files"] += 1
                totals["records"] += entry["records"]
                totals["bytes"] += entry["bytes"]
                tenants[entry["tenant"]] += entry["records"]
            context.log.info(f"{provider}/{stream} {day}: {len(manifest['files'])} files")
        return MaterializeResult(
            metadata={
                "partitions": len(context.partition_keys),
                "files": totals["files"],
                "dagster/row_count": totals["records"],
                "bytes": MetadataValue.int(totals["bytes"]),
                "records_by_tenant": MetadataValue.json(dict(sorted(tenants.items()))),
                "lake_prefix": MetadataValue.path(lake.spark_path(f"raw/*/{provider}/{stream}/")),
            }
        )

    return _raw


raw_app_events = raw_stream_asset(
    "app", "events",
    "Product analytics events (page_view, add_to_cart, checkout, purchase, identify) as the apps' "
    "SDKs delivered them: at-least-once, mixed timestamp formats, partitioned by arrival day.",
)
