"""Benchmark: Singer target throughput against plain gzip + write of the same NDJSON, same run.

Sample app events become a Singer stream (SCHEMA, RECORDs, a STATE every 10,000); the target
parses, validates (tap schema and registry), files them by event day and writes NDJSON.gz. The
baseline gzips the same records' NDJSON in 20,000-record files and writes them through the same
lake resource. Prints records/s and MB/s (of NDJSON input) for both, and the ratio.

    .venv/bin/python bench/ingest.py                      # ~0.5 million events
    .venv/bin/python bench/ingest.py --customers 5000     # quick
"""

import argparse
import io
import json
import shutil
import time

from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.singer_target import SingerTarget
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE, decode_ndjson_gz
from cdp_resources.settings import state_dir
from cdp_sampledata.generator import GeneratorConfig, generate


def singer_stream(records: list[dict], schema: dict) -> str:
    lines = [json.dumps({"type": "SCHEMA", "stream": "events", "schema": schema, "key_properties": ["message_id"]})]
    for index, record in enumerate(records, 1):
        lines.append(json.dumps({"type": "RECORD", "stream": "events", "record": record}))
        if index % 10_000 == 0:
            lines.append(json.dumps({"type": "STATE", "value": {"bookmark": index}}))
    return "\n".join(lines) + "\n"


def baseline(lake: LakeResource, ndjson_lines: list[bytes]) -> float:
    import gzip

    started = time.perf_counter()
    for index in range(0, len(ndjson_lines), MAX_RECORDS_PER_FILE):
        body = b"".join(ndjson_lines[index : index + MAX_RECORDS_PER_FILE])
        lake.write_bytes(
            f"raw/bench/app/events/plain_{index:09d}.ndjson.gz", gzip.compress(body, compresslevel=6, mtime=0)
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=40_000)
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()

    root = state_dir() / "bench" / "ingest"
    shutil.rmtree(root, ignore_errors=True)
    source = LakeResource(base_uri=str(root / "source"))
    generate(source, GeneratorConfig(tenants=("acme_corp",), days=args.days, customers=args.customers), progress=False)
    records = [
        r for obj in source.list("raw/acme_corp/app/events/") for r in decode_ndjson_gz(source.read_bytes(obj.key))
    ]
    ndjson = [json.dumps(r).encode() + b"\n" for r in records]
    megabytes = sum(map(len, ndjson)) / 1e6
    registry = SchemaRegistry.configured()
    stream = singer_stream(records, registry.latest("app", "events").schema)

    target_lake = LakeResource(base_uri=str(root / "target"))
    writer = RawBatchWriter(target_lake, registry, "acme_corp", "app", source="singer")
    out = io.StringIO()
    started = time.perf_counter()
    SingerTarget(writer, out).run(io.StringIO(stream))
    target_seconds = time.perf_counter() - started
    assert sum(writer.landed.values()) + writer.dead_lettered == len(records)
    base_seconds = baseline(LakeResource(base_uri=str(root / "baseline")), ndjson)
    shutil.rmtree(root, ignore_errors=True)

    print(f"records:  {len(records):,} app events, {megabytes:,.1f} MB of NDJSON")
    print(
        f"target:   {target_seconds:7.2f} s  {len(records) / target_seconds:10,.0f} records/s  {megabytes / target_seconds:6.1f} MB/s"
    )
    print(
        f"baseline: {base_seconds:7.2f} s  {len(records) / base_seconds:10,.0f} records/s  {megabytes / base_seconds:6.1f} MB/s  (gzip + write)"
    )
    print(f"ratio target/baseline throughput: {base_seconds / target_seconds:.2f}")


if __name__ == "__main__":
    main()
