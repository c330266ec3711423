"""File drops: CSV, JSON-lines and Parquet exports become raw files, once, on a directory and on S3;
damaged files land what can be read and dead-letter the rest; counts reconcile."""

import csv
import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp_ingest.file_drops import pending_drops, process_drops
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz, event_day


@pytest.fixture
def drops(any_lake) -> LakeResource:
    return any_lake


@pytest.fixture(scope="module")
def customers(sample_lake) -> list[dict]:
    return [
        r
        for obj in sample_lake.list("raw/globex/shopify/customers/")
        for r in decode_ndjson_gz(sample_lake.read_bytes(obj.key))
    ]


def as_csv(records: list[dict]) -> bytes:
    columns = [
        "id",
        "email",
        "first_name",
        "last_name",
        "phone",
        "created_at",
        "updated_at",
        "accepts_marketing",
        "default_address.city",
        "default_address.country_code",
        "default_address.country",
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in records:
        address = r["default_address"]
        writer.writerow(
            [
                r["id"],
                r["email"],
                r["first_name"],
                r["last_name"],
                r["phone"] or "",
                r["created_at"],
                r["updated_at"],
                "" if r["accepts_marketing"] is None else str(r["accepts_marketing"]).lower(),
                address["city"],
                address["country_code"],
                address["country"],
            ]
        )
    return out.getvalue().encode()


def raw_records(lake: LakeResource) -> list[tuple[str, dict]]:
    return [(obj.key, r) for obj in lake.list("raw/") for r in decode_ndjson_gz(lake.read_bytes(obj.key))]


def test_three_formats_land_once(drops, customers, tmp_path):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    thirds = [customers[i::3] for i in range(3)]
    drops.write_bytes("drops/globex/shopify/customers/export-a.csv", as_csv(thirds[0]))
    drops.write_bytes(
        "drops/globex/shopify/customers/export-b.jsonl.gz",
        gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in thirds[1])),
    )
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "sms_marketing_consent"} for r in thirds[2]])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    drops.write_bytes("drops/globex/shopify/customers/export-c.parquet", sink.getvalue())

    outcomes = process_drops(drops, lake, SchemaRegistry())
    assert sorted(o.key.rsplit("/", 1)[1] for o in outcomes) == [
        "export-a.csv",
        "export-b.jsonl.gz",
        "export-c.parquet",
    ]
    assert all(o.error is None and o.dead_lettered == 0 and o.landed == o.records for o in outcomes)
    landed = raw_records(lake)
    assert sorted(r["id"] for _, r in landed) == sorted(r["id"] for r in customers)
    originals = {(r["id"], r["updated_at"]): r for r in customers}
    for key, record in landed:
        original = originals[(record["id"], record["updated_at"])]
        assert record["email"] == original["email"] and record["default_address"] == original["default_address"]
        assert record["accepts_marketing"] is original["accepts_marketing"]
        match = RAW_KEY.match(key)
        assert f"{match['year']}-{match['month']}-{match['day']}" == event_day(record["updated_at"]).isoformat()

    assert pending_drops(drops) == [] and process_drops(drops, lake, SchemaRegistry()) == []  # never twice
    assert len(raw_records(lake)) == len(customers)
    assert len(drops.list("drops/")) == 3  # the drop files themselves are kept


def test_damaged_files_land_what_can_be_read(drops, customers, tmp_path):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    lines = [json.dumps(r).encode() for r in customers[:40]]
    lines[5] = b'{"id": 1, "email": '  # malformed line
    lines[7] = json.dumps({**customers[7], "id": "not-a-number"}).encode()  # fails the schema
    compressed = gzip.compress(b"\n".join(lines) + b"\n")
    drops.write_bytes("drops/globex/shopify/customers/truncated.jsonl.gz", compressed[: len(compressed) * 2 // 3])
    drops.write_bytes("drops/globex/shopify/customers/garbage.parquet", b"PAR1 this is not parquet")
    drops.write_bytes("drops/globex/shopify/refunds/r.jsonl", b'{"id": 1}\n')

    outcomes = {o.key.rsplit("/", 1)[1]: o for o in process_drops(drops, lake, SchemaRegistry())}
    truncated = outcomes["truncated.jsonl.gz"]
    assert "truncated" in truncated.error
    assert 5 < truncated.landed < 38 and truncated.records == truncated.landed + 2  # the two bad lines
    assert truncated.dead_lettered == 3  # malformed, schema violation, and the unreadable rest of the file
    assert "not a readable Parquet file" in outcomes["garbage.parquet"].error
    assert outcomes["r.jsonl"].dead_lettered == 1 and outcomes["r.jsonl"].landed == 0

    letters = [r for obj in lake.list("dlq/") for r in decode_ndjson_gz(lake.read_bytes(obj.key))]
    rules = sorted(letter["rule"] for letter in letters)
    assert rules == ["malformed_json", "schema_violation", "unknown_stream", "unreadable_file", "unreadable_file"]
    assert all(letter["source"].startswith("drop:") for letter in letters)
    tail = next(letter for letter in letters if letter["rule"] == "unreadable_file" and "truncated" in letter["reason"])
    assert tail["payload"]["incomplete_line"]  # the half line is kept, not landed
    landed_ids = {r["id"] for _, r in raw_records(lake)}
    assert landed_ids <= {r["id"] for r in customers[:40]} and customers[7]["id"] not in landed_ids
