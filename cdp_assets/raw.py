"""Raw assets: one per provider stream in the schema registry, daily-partitioned by event day.

Materialising a partition takes stock of that day's files for every tenant: it writes a manifest
(`manifests/raw/{provider}/{stream}/{day}.json`: each file's key, bytes and record count) that
downstream Spark assets read, so a curated run reads exactly the files the raw run saw. Metadata:
files, records, bytes, records per tenant, schema drift (fields not in the registered schema,
with count and example) and the stream's dead letters of that day, per rule.
"""

import json
from collections import Counter

import orjson
from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy, MaterializeResult, MetadataValue, asset

from cdp_common.dead_letters import DLQ_KEY
from cdp_ingest.registry import DriftReport, RegisteredSchema, SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, gunzip_what_you_can
from partitions import daily_partitions

RAW_OWNERS = ["team:data-platform"]


def manifest_key(provider: str, stream: str, day: str) -> str:
    return f"manifests/raw/{provider}/{stream}/{day}.json"


def _day(match) -> str:
    return f"{match['year']}-{match['month']}-{match['day']}"


def build_manifests(lake: LakeResource, registered: RegisteredSchema, days: list[str]) -> tuple[dict, DriftReport]:
    """For each day, the stream's files that hold its records (all tenants), with record counts;
    and the drift seen in them."""
    provider, stream = registered.provider, registered.stream
    manifests = {day: {"provider": provider, "stream": stream, "day": day, "files": []} for day in days}
    drift = DriftReport()
    for obj in lake.list("raw/"):
        match = RAW_KEY.match(obj.key)
        if not match or (match["provider"], match["stream"]) != (provider, stream) or _day(match) not in manifests:
            continue
        body, error = gunzip_what_you_can(lake.read_bytes(obj.key))
        complete = body if not error else body[: body.rfind(b"\n") + 1]  # never count half a record
        lines = complete.splitlines()
        for line in lines:
            drift.add(orjson.loads(line), registered.schema)
        entry = {"key": obj.key, "tenant": match["tenant"], "bytes": obj.size, "records": len(lines)}
        if error:
            entry["error"] = error  # downstream leaves damaged files out and reports them
        manifests[_day(match)]["files"].append(entry)
    return manifests, drift


def read_manifest(lake: LakeResource, provider: str, stream: str, day: str) -> dict | None:
    key = manifest_key(provider, stream, day)
    if not lake.list(key):
        return None
    return json.loads(lake.read_bytes(key))


def dead_letter_counts(lake: LakeResource, provider: str, stream: str, days: list[str]) -> Counter:
    """Dead letters of `provider/stream` filed under `days`, per rule."""
    counts, wanted = Counter(), set(days)
    for obj in lake.list("dlq/"):
        match = DLQ_KEY.match(obj.key)
        if match and (match["provider"], match["stream"]) == (provider, stream) and match["day"] in wanted:
            counts[match["error_type"]] += gunzip_what_you_can(lake.read_bytes(obj.key))[0].count(b"\n")
    return counts


def raw_stream_asset(registered: RegisteredSchema) -> AssetsDefinition:
    """The raw asset of one registered provider stream (key `raw/{provider}/{stream}`)."""
    provider, stream = registered.provider, registered.stream

    @asset(
        key=["raw", provider, stream],
        group_name="raw",
        owners=RAW_OWNERS,
        kinds={"ndjson"},
        description=f"{registered.description} Raw NDJSON.gz as received, filed by event day (schema v{registered.version}).",
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        tags={"layer": "raw", "provider": provider},
        metadata={"schema_version": registered.version, "natural_key": ", ".join(registered.key)},
    )
    def _raw(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
        totals, tenants, damaged = Counter(), Counter(), []
        manifests, drift = build_manifests(lake, registered, context.partition_keys)
        for day, manifest in manifests.items():
            lake.write_bytes(manifest_key(provider, stream, day), json.dumps(manifest, indent=1).encode())
            for entry in manifest["files"]:
                if "error" in entry:
                    damaged.append({"key": entry["key"], "error": entry["error"]})
                    context.log.error(f"damaged raw file {entry['key']}: {entry['error']}")
                totals["files"] += 1
                totals["records"] += entry["records"]
                totals["bytes"] += entry["bytes"]
                tenants[entry["tenant"]] += entry["records"]
        dead_letters = dead_letter_counts(lake, provider, stream, context.partition_keys)
        context.log.info(
            f"{provider}/{stream}: {totals['files']} files, {totals['records']} records "
            f"over {len(manifests)} days; drift fields: {sorted(drift.counts)}"
        )
        return MaterializeResult(
            metadata={
                "partitions": len(context.partition_keys),
                "files": totals["files"],
                "dagster/row_count": totals["records"],
                "bytes": MetadataValue.int(totals["bytes"]),
                "records_by_tenant": MetadataValue.json(dict(sorted(tenants.items()))),
                "schema_drift": MetadataValue.json(drift.as_dict()),
                "drift_fields": len(drift.counts),
                "damaged_files": MetadataValue.json(damaged),
                "dead_letters": sum(dead_letters.values()),
                "dead_letters_by_rule": MetadataValue.json(dict(sorted(dead_letters.items()))),
                "lake_prefix": MetadataValue.path(lake.spark_path(f"raw/*/{provider}/{stream}/")),
            }
        )

    return _raw


registry = SchemaRegistry()
raw_assets = [raw_stream_asset(registry.latest(provider, stream)) for provider, stream in registry.streams()]
