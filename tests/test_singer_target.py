"""The Singer target: a real tap from PyPI piped into `cdp-target`, bad input dead-lettered with
counts that reconcile, and the STATE rule shown by killing the target mid-stream and resuming."""

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz, event_day
from tests.conftest import TEST_STATE

TARGET = str(Path(sys.executable).parent / "cdp-target")
TAP_PACKAGE = "tap-jsonl==0.3.1"


@pytest.fixture(scope="session")
def tap_jsonl() -> Path:
    """tap-jsonl from PyPI in a virtualenv of its own (as Meltano installs plugins)."""
    venv = TEST_STATE / "taps" / "tap-jsonl"
    executable = venv / "bin" / "tap-jsonl"
    if not executable.exists():
        uv = Path(sys.executable).parent / "uv"
        subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), TAP_PACKAGE], check=True
        )
    return executable


@pytest.fixture(scope="module")
def orders(sample_lake) -> list[dict]:
    """Real sample Shopify orders (one tenant), as a shop would export them."""
    return [
        record
        for obj in sample_lake.list("raw/acme_corp/shopify/orders/")
        for record in decode_ndjson_gz(sample_lake.read_bytes(obj.key))
    ]


def landed(lake: LakeResource, prefix: str = "raw/") -> list[tuple[str, dict]]:
    return [(obj.key, record) for obj in lake.list(prefix) for record in decode_ndjson_gz(lake.read_bytes(obj.key))]


def dead_letters(lake: LakeResource) -> list[dict]:
    return [letter for _, letter in landed(lake, "dlq/")]


def test_real_tap_piped_into_the_target(tap_jsonl, orders, tmp_path):
    source = tmp_path / "orders.jsonl"
    source.write_text("".join(json.dumps(order) + "\n" for order in orders))
    (tmp_path / "tap.json").write_text(
        json.dumps({"path": str(source), "stream_name": "orders", "primary_keys": ["id"]})
    )
    (tmp_path / "target.json").write_text(
        json.dumps(
            {"tenant": "acme_corp", "provider": "shopify", "lake_uri": str(tmp_path / "lake"), "max_records": 100}
        )
    )
    pipeline = (
        f"{shlex.quote(str(tap_jsonl))} --config {tmp_path / 'tap.json'} | {TARGET} --config {tmp_path / 'target.json'}"
    )
    result = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    rows = landed(lake)
    assert dead_letters(lake) == []
    assert sorted(r["id"] for _, r in rows) == sorted(o["id"] for o in orders)
    by_id = {o["id"]: o for o in orders}
    for key, record in rows:
        match = RAW_KEY.match(key)
        assert (match["tenant"], match["provider"], match["stream"]) == ("acme_corp", "shopify", "orders")
        assert f"{match['year']}-{match['month']}-{match['day']}" == event_day(record["created_at"]).isoformat()
        assert {k: v for k, v in record.items() if not k.startswith("_sdc_")} == by_id[record["id"]]
    assert max(Counter(key for key, _ in rows).values()) <= 100
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["type"] == "STATE" and "bookmarks" in last["value"]
    assert f"{len(orders)} records received, {len(orders)} landed" in result.stderr


def test_bad_input_is_dead_lettered_and_counts_reconcile(orders, tmp_path):
    schema = {
        "type": "SCHEMA",
        "stream": "orders",
        "key_properties": ["id"],
        "schema": SchemaRegistry().latest("shopify", "orders").schema,
    }
    good = [{"type": "RECORD", "stream": "orders", "record": o} for o in orders[:50]]
    wrong_type = {"type": "RECORD", "stream": "orders", "record": {**orders[0], "id": 999, "total_price": 12.5}}
    no_id = {"type": "RECORD", "stream": "orders", "record": {k: v for k, v in orders[1].items() if k != "id"}}
    unknown = [
        {"type": "SCHEMA", "stream": "refunds", "schema": {}},
        {"type": "RECORD", "stream": "refunds", "record": {"id": 1}},
    ]
    early = {"type": "RECORD", "stream": "customers", "record": {"id": 5, "updated_at": "2026-01-01T00:00:00Z"}}
    breaking = [
        {
            "type": "SCHEMA",
            "stream": "products",
            "schema": {"properties": {"id": {"type": "string"}, "title": {}, "updated_at": {}}},
        },
        {"type": "RECORD", "stream": "products", "record": {"id": "p1", "title": "x", "updated_at": "2026-01-01"}},
    ]
    lines = (
        [json.dumps(m) for m in [schema, *good[:25]]]
        + ['{"type": "RECORD", "stream": "orders", "record": {"id": 1']
        + [
            json.dumps(m)
            for m in [*good[25:], wrong_type, no_id, *unknown, early, *breaking, {"type": "STATE", "value": {"n": 1}}]
        ]
    )
    result = subprocess.run(
        [TARGET, "--tenant", "acme_corp", "--provider", "shopify", "--lake", str(tmp_path / "lake")],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    letters = dead_letters(lake)
    by_rule = Counter(letter["rule"] for letter in letters)
    assert by_rule == {
        "malformed_json": 1,
        "schema_violation": 2,
        "unknown_stream": 1,
        "record_before_schema": 1,
        "breaking_schema_change": 1,
    }
    received = 50 + 1 + 2 + 1 + 1 + 1
    assert len(landed(lake)) == 50 and len(landed(lake)) + len(letters) == received
    assert f"{received} records received, 50 landed" in result.stderr
    reasons = {letter["rule"]: letter["reason"] for letter in letters}
    assert "field 'id'" in reasons["breaking_schema_change"] and "total_price" in " ".join(
        letter["reason"] for letter in letters if letter["rule"] == "schema_violation"
    )
    for letter in letters:
        assert set(letter) == {"payload", "reason", "rule", "stream", "source", "first_seen", "retry_count"}
        assert letter["source"] == "singer" and letter["retry_count"] == 0
    assert json.loads(result.stdout.strip()) == {"type": "STATE", "value": {"n": 1}}


def _messages(orders: list[dict], start: int) -> list[str]:
    """A tap's output from bookmark `start`: SCHEMA, then records with a STATE after every 50."""
    lines = [json.dumps({"type": "SCHEMA", "stream": "orders", "schema": {"type": "object"}, "key_properties": ["id"]})]
    for index in range(start, len(orders)):
        lines.append(json.dumps({"type": "RECORD", "stream": "orders", "record": orders[index]}))
        if (index + 1) % 50 == 0:
            lines.append(json.dumps({"type": "STATE", "value": {"bookmark": index + 1}}))
    return lines


def test_state_only_after_records_are_durable_kill_and_resume(orders, tmp_path):
    orders = [{**order, "id": order["id"] + copy * 10**12} for copy in range(10) for order in orders]
    lake_dir = str(tmp_path / "lake")
    command = [TARGET, "--tenant", "acme_corp", "--provider", "shopify", "--lake", lake_dir, "--max-age", "0.3"]
    target = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    states: list[dict] = []
    reader = threading.Thread(target=lambda: states.extend(json.loads(line) for line in target.stdout), daemon=True)
    reader.start()
    for number, line in enumerate(_messages(orders, 0)):
        target.stdin.write(line + "\n")
        target.stdin.flush()
        if number % 10 == 0:
            time.sleep(0.05)  # a tap that pages through an API
        if len(states) >= 3:
            break
    target.send_signal(signal.SIGKILL)
    target.wait()
    reader.join(timeout=5)
    assert len(states) >= 3, "the target printed no STATE while records kept arriving"

    bookmark = states[-1]["value"]["bookmark"]
    lake = LakeResource(base_uri=lake_dir)
    durable = {record["id"] for _, record in landed(lake)}
    assert {order["id"] for order in orders[:bookmark]} <= durable  # everything before the STATE survived the kill

    resumed = subprocess.run(
        command, input="\n".join(_messages(orders, bookmark)) + "\n", capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    ids = [record["id"] for _, record in landed(lake)]
    assert set(ids) == {order["id"] for order in orders}  # nothing lost; at most re-delivered
    assert len(ids) - len(set(ids)) < len(orders) - bookmark + 100
