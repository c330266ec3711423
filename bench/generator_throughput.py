"""Benchmark: sample-data generator throughput against a plain NDJSON.gz writer, in the same run.

The baseline writes the same number of records (one fixed event record, serialised with orjson,
gzipped, 20k per file, through the same lake resource) on one core; the generator makes real,
dirty, multi-stream data on `--workers` cores. Prints records/s for both and their ratio.

    .venv/bin/python bench/generator_throughput.py                  # ~10 million records
    .venv/bin/python bench/generator_throughput.py --customers 20000 --days 10   # quick
"""

import argparse
import os
import shutil
import time

from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE, encode_ndjson_gz
from cdp_resources.settings import state_dir
from cdp_sampledata.generator import GeneratorConfig, generate

BASELINE_RECORD = {
    "message_id": "6f1c7a0e-8a51-4e4f-9c7e-0f1f5d7e2b3c",
    "type": "track",
    "event": "page_view",
    "user_id": "u_Ab12Cd34Ef56",
    "anonymous_id": "0b7e5f9a-3d2c-4e1b-8a9f-6c5d4e3f2a1b",
    "timestamp": "2026-01-05T15:15:00.000Z",
    "properties": {"url": "/products/sho-0042"},
}


def baseline(lake: LakeResource, records: int) -> float:
    started = time.perf_counter()
    batch = [BASELINE_RECORD] * MAX_RECORDS_PER_FILE
    for index in range(0, records, MAX_RECORDS_PER_FILE):
        rows = batch[: min(MAX_RECORDS_PER_FILE, records - index)]
        lake.write_bytes(f"raw/bench/app/events/day=01/events_{index:09d}.ndjson.gz", encode_ndjson_gz(rows))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=48)
    parser.add_argument("--tenants", default="acme_corp,globex")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    root = state_dir() / "bench" / "generator"
    shutil.rmtree(root, ignore_errors=True)
    config = GeneratorConfig(tenants=tuple(args.tenants.split(",")), days=args.days, customers=args.customers)
    summary = generate(LakeResource(base_uri=str(root / "generated")), config, workers=args.workers)
    base_seconds = baseline(LakeResource(base_uri=str(root / "baseline")), summary.total_records)
    shutil.rmtree(root, ignore_errors=True)

    generated_rate = summary.total_records / summary.seconds
    baseline_rate = summary.total_records / base_seconds
    print(f"records:   {summary.total_records:,} in {summary.files:,} files")
    print(f"generator: {summary.seconds:8.1f} s  {generated_rate:12,.0f} records/s  ({args.workers} workers)")
    print(f"baseline:  {base_seconds:8.1f} s  {baseline_rate:12,.0f} records/s  (orjson + gzip + write, 1 core)")
    print(f"ratio generator/baseline throughput: {generated_rate / baseline_rate:.2f}")


if __name__ == "__main__":
    main()
