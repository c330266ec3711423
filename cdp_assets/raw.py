"""Raw assets: one per provider stream in the schema registry, daily-partitioned by event day.

Materialising a partition takes stock of that day's files for every tenant: it writes a manifest
(`cdp_ingest/manifests.py`) that downstream Spark assets read, so a curated run reads exactly the
files the raw run saw. Metadata: files, records, bytes, records per tenant, schema drift (fields
not in the registered schema, with count and example) and the stream's dead letters of that day,
per rule.
"""

from collections import Counter

from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy, MaterializeResult, MetadataValue, asset

from cdp_assets.keys import raw_key
from cdp_ingest.manifests import build_manifests, dead_letter_counts, write_manifest
from cdp_ingest.registry import RegisteredSchema, SchemaRegistry
from cdp_resources.lake import LakeResource
from partitions import daily_partitions

RAW_OWNERS = ["team:data-platform"]


def raw_stream_asset(registered: RegisteredSchema) -> AssetsDefinition:
    """The raw asset of one registered provider stream (key `raw/{provider}/{stream}`)."""
    provider, stream = registered.provider, registered.stream

    @asset(
        key=raw_key(provider, stream),
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
        for manifest in manifests.values():
            write_manifest(lake, manifest)
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


registry = SchemaRegistry.configured()
raw_assets = [raw_stream_asset(registry.latest(provider, stream)) for provider, stream in registry.streams()]
