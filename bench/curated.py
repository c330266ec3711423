"""Benchmark: the curated job against a plain Spark read of NDJSON.gz and write to Delta, same run.

Both read the same generated raw files. The baseline reads every stream's files with the same
read schema and writes them to Delta with no logic (the practical limit on this machine); the
curated job runs every raw and curated asset over the whole range in one run (historic mode),
with typing, deduplication, normalisation, enrichment, quality rules, dead letters and metadata.
Prints records/s for both and their ratio (goal ≥ 0.5 at 1M records or more).

    .venv/bin/python bench/curated.py                       # ~1.2 million raw records
    .venv/bin/python bench/curated.py --customers 10000 --days 3   # quick
"""

import argparse
import shutil
import time
from datetime import timedelta

from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

from cdp_assets.definitions import defs
from cdp_resources.lake import LakeResource
from cdp_resources.settings import state_dir
from cdp_resources.spark import SparkDeltaResource, get_spark_session
from cdp_sampledata.generator import GeneratorConfig, generate
from cdp_transform.entities import ENTITIES
from partitions import daily_partitions


def baseline(lake: LakeResource, out: str) -> float:
    spark = get_spark_session()
    started = time.perf_counter()
    for spec in {(s.provider, s.stream): s for s in ENTITIES}.values():
        files = [lake.spark_path(o.key) for o in lake.list("raw/") if f"/{spec.provider}/{spec.stream}/" in o.key]
        spark.read.schema(spec.read_schema).json(files).write.format("delta").mode("overwrite").save(f"{out}/{spec.stream}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()

    root = state_dir() / "bench" / "curated"
    shutil.rmtree(root, ignore_errors=True)
    lake = LakeResource(base_uri=str(root / "lake"))
    config = GeneratorConfig(days=args.days, customers=args.customers)
    records = generate(lake, config, progress=False).total_records
    spark = SparkDeltaResource()
    spark.spark_session  # start Spark before timing either side

    base_seconds = baseline(lake, str(root / "baseline"))
    job = define_asset_job("bench", selection=AssetSelection.groups("raw", "curated"), partitions_def=daily_partitions)
    bench_defs = Definitions(assets=list(defs.assets), jobs=[job], executor=defs.executor, resources={"lake": lake, "spark": spark})
    first, last = config.start, config.start + timedelta(days=config.days - 1)
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = bench_defs.resolve_job_def("bench").execute_in_process(
            instance=instance, tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    curated_seconds = time.perf_counter() - started
    assert result.success
    shutil.rmtree(root, ignore_errors=True)

    print(f"raw records: {records:,} over {config.days} days, {len(config.tenants)} tenants")
    print(f"baseline: {base_seconds:7.1f} s  {records / base_seconds:10,.0f} records/s  (read NDJSON.gz, write Delta, no logic)")
    print(f"curated:  {curated_seconds:7.1f} s  {records / curated_seconds:10,.0f} records/s  (raw + curated assets, one run)")
    print(f"ratio curated/baseline throughput: {base_seconds / curated_seconds:.2f}")


if __name__ == "__main__":
    main()
