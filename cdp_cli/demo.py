"""The main job on the embedded defaults: generate sample data, then materialise every partition
and print where the results are, down to each segment's audience export."""

import json
from datetime import date, timedelta

from dagster import DagsterInstance

from cdp_resources.lake import LakeResource
from cdp_sampledata.generator import GeneratorConfig, generate

DERIVED_ZONES = ("curated/", "identity/", "profiles/")
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def sample_is_current(lake: LakeResource, config: GeneratorConfig) -> bool:
    """True when the lake already holds the sample data of exactly this configuration."""
    if not lake.list("truth/manifest.json"):
        return False
    written = json.loads(lake.read_bytes("truth/manifest.json"))["config"]
    return (
        written["seed"] == config.seed
        and written["days"] == config.days
        and written["customers"] == config.customers
        and written["tenants"] == list(config.tenants)
        and written["start"] == config.start.isoformat()
    )


def run_demo(config: GeneratorConfig, workers: int) -> dict:
    """Generate (unless already there) and materialise `lake_daily` over every generated day."""
    from cdp_assets.definitions import defs

    lake = defs.resources["lake"]
    if not sample_is_current(lake, config):
        summary = generate(lake, config, workers=workers)
        print(f"generated {summary.total_records:,} records in {summary.files} files ({summary.seconds:.1f}s)")
    for (
        zone
    ) in DERIVED_ZONES:  # rebuilt from the raw zone every time, so tables of an older version never get in the way
        for obj in lake.list(zone):
            lake.delete(obj.key)
    first = config.start
    last = config.start + timedelta(days=config.days - 1)
    job = defs.resolve_job_def("lake_daily")
    instance = DagsterInstance.get()
    print(f"materialising lake_daily for {first} … {last} (one run, single-run backfill)")
    result = job.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    return {"run_id": result.run_id, "success": result.success, "first": first, "last": last, "lake": lake}


def accuracy_lines(lake: LakeResource) -> list[str]:
    """Identity resolution in the lake against its ground truth, as printable lines."""
    from cdp_identity.accuracy import pair_accuracy
    from cdp_resources.lake_paths import MAP
    from cdp_resources.spark import SparkDeltaResource

    if not lake.list(f"{MAP}/_delta_log/"):
        return [f"no identity map in {lake.spark_path(MAP)}: materialise identity/customer_ids first"]
    spark = SparkDeltaResource().session_for(lake)
    score = pair_accuracy(spark, lake, spark.read.format("delta").load(lake.spark_path(MAP)))
    return [
        f"identity:          {score['profiles']:,} profiles for {score['persons']:,} people in the truth; "
        f"pair precision {score['pair_precision']:.4f}, pair recall {score['pair_recall']:.4f} "
        f"({score['correct_pairs']:,} of {score['predicted_pairs']:,} predicted pairs right, "
        f"{score['true_pairs']:,} true pairs)"
    ]


def segment_lines(as_of: date) -> list[str]:
    """Members per segment and tenant in segments.segment_membership as of `as_of`, as printable lines."""
    from cdp_assets.dbt import MEMBERSHIP
    from cdp_resources.warehouse import WarehouseResource

    with WarehouseResource().connect() as conn:
        rows = conn.execute(
            f"SELECT segment, tenant_id, count(*) FROM {MEMBERSHIP} WHERE as_of_date = %s GROUP BY 1, 2 ORDER BY 1, 2",
            (as_of,),
        ).fetchall()
    by_segment: dict[str, list[str]] = {}
    for segment, tenant, members in rows:
        by_segment.setdefault(segment, []).append(f"{tenant} {members:,}")
    return [
        f"segments as of {as_of} ({MEMBERSHIP}, {len(by_segment)} segments):",
        *(f"  {segment:<32} {', '.join(counts)}" for segment, counts in by_segment.items()),
    ]


def audience_lines(lake: LakeResource, as_of: date) -> list[str]:
    """Members, additions and removals of every audience exported for `as_of`, as printable lines."""
    from cdp_activation.audiences import ROOT

    suffix = f"/date={as_of.isoformat()}/_manifest.json"
    manifests = [json.loads(lake.read_bytes(obj.key)) for obj in lake.list(f"{ROOT}/") if obj.key.endswith(suffix)]
    by_segment: dict[str, list[str]] = {}
    for m in sorted(manifests, key=lambda m: (m["segment"], m["tenant"])):
        by_segment.setdefault(m["segment"], []).append(
            f"{m['tenant']} {m['members']:,} members (+{m['added']:,} -{m['removed']:,})"
        )
    return [
        f"audiences as of {as_of} ({lake.spark_path(ROOT + '/')}, {sum(len(m['files']) for m in manifests)} "
        f"Parquet files, {len(by_segment)} segments; + added, - removed since the previous export):",
        *(f"  {segment:<32} {', '.join(counts)}" for segment, counts in by_segment.items()),
    ]


def describe(outcome: dict) -> str:
    lake: LakeResource = outcome["lake"]
    return "\n".join(
        [
            f"run {outcome['run_id']}: {'succeeded' if outcome['success'] else 'FAILED'}",
            f"raw zone:          {lake.spark_path('raw/')}",
            f"curated tables:    {lake.spark_path('curated/')} (Delta; dead letters in curated/_dead_letters/{{table}})",
            f"identity, profiles: {lake.spark_path('identity/')}, {lake.spark_path('profiles/')} (Delta)",
            *(accuracy_lines(lake) if outcome["success"] else []),
            "warehouse:         PostgreSQL schemas raw_cdp (loaded tables), staging, intermediate, marts, segments (dbt)",
            *(segment_lines(outcome["last"]) if outcome["success"] else []),
            *(audience_lines(lake, outcome["last"]) if outcome["success"] else []),
            "dbt docs:          .venv/bin/cdp dbt docs   (then http://127.0.0.1:8080)",
            f"ground truth:      {lake.spark_path('truth/')}",
            "open the UI:       make dev   (then http://127.0.0.1:3000)",
        ]
    )


def default_demo_config(start: date) -> GeneratorConfig:
    return GeneratorConfig(tenants=("acme_corp", "globex"), days=7, customers=2_000, seed=42, start=start)
