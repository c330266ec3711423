"""Reprocessing the dead-letter zone after a fix: what passes lands, what still fails stays with
its retry count raised and first-seen time kept; nothing is lost or kept twice."""

import shutil
import subprocess
import sys
from pathlib import Path

from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SCHEMA_DIR, SchemaRegistry
from cdp_ingest.reprocess import reprocess
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import decode_ndjson_gz

REFUNDS = {
    "type": "object",
    "x-cdp-event-time": "created_at",
    "x-cdp-key": ["id"],
    "properties": {"id": {"type": "integer"}, "order_id": {"type": "integer"}, "created_at": {"type": "string"}},
    "required": ["id", "created_at"],
}


def read_all(lake: LakeResource, prefix: str) -> list[dict]:
    return [r for obj in lake.list(prefix) for r in decode_ndjson_gz(lake.read_bytes(obj.key))]


def test_reprocess_after_registering_the_missing_stream(tmp_path):
    registry = SchemaRegistry(shutil.copytree(SCHEMA_DIR, tmp_path / "schemas"))
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    writer = RawBatchWriter(lake, registry, "acme_corp", "shopify", source="singer")
    for index in range(30):
        writer.add("refunds", {"id": index, "order_id": 7, "created_at": f"2026-01-0{1 + index % 3}T10:00:00Z"})
    writer.add("orders", {"id": "bad"})  # stays invalid whatever we register
    writer.flush()
    first_letters = read_all(lake, "dlq/")
    assert len(first_letters) == 31 and read_all(lake, "raw/") == []

    registry.register("shopify", "refunds", REFUNDS)
    outcome = reprocess(lake, registry, "acme_corp", "shopify")
    assert outcome.resubmitted == 31
    assert outcome.landed == {"refunds": 30} and outcome.still_failing == {"schema_violation": 1}
    assert sorted(r["id"] for r in read_all(lake, "raw/")) == list(range(30))
    (left,) = read_all(lake, "dlq/")
    original = next(letter for letter in first_letters if letter["stream"] == "orders")
    assert (
        left["retry_count"] == 1 and left["first_seen"] == original["first_seen"] and left["payload"] == {"id": "bad"}
    )

    again = reprocess(lake, registry, "acme_corp", "shopify", error_type="schema_violation")
    assert again.resubmitted == 1 and read_all(lake, "dlq/")[0]["retry_count"] == 2
    assert len(read_all(lake, "raw/")) == 30


def test_reprocess_command(tmp_path):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    writer = RawBatchWriter(lake, SchemaRegistry(), "acme_corp", "stripe", source="singer")
    writer.add("charges", {"id": "ch_1", "amount": "12", "currency": "usd", "created": 1767657300})
    writer.flush()
    cdp = str(Path(sys.executable).parent / "cdp")
    result = subprocess.run(
        [cdp, "dlq", "reprocess", "--tenant", "acme_corp", "--provider", "stripe", "--lake", lake.base_uri],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "1 dead letters resubmitted: 0 landed {}, 1 still failing {'schema_violation': 1}" in result.stdout
    assert read_all(lake, "dlq/")[0]["retry_count"] == 1
