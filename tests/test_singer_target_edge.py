"""The Singer target against what a tap can send besides a clean RECORD stream: path-like stream
names, BATCH messages, bytes that are not UTF-8, malformed messages, key properties, table
versions and unregistered streams. Each runs the real `cdp-target` process on stdin, and every
record sent is accounted for: landed, dead-lettered with a reason, or refused before a STATE."""

import gzip
import json
import queue
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from cdp_common.dead_letters import DLQ_KEY
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz

TARGET = str(Path(sys.executable).parent / "cdp-target")
ORDERS_SCHEMA = SchemaRegistry().latest("shopify", "orders").schema


def order(order_id: int, **changes) -> dict:
    return {
        "id": order_id,
        "created_at": "2026-01-05T10:00:00Z",
        "currency": "USD",
        "total_price": "19.90",
        "line_items": [{"id": order_id * 10, "sku": "A1", "quantity": 1, "price": "19.90"}],
        **changes,
    }


def schema(stream: str = "orders", key_properties=("id",), body: dict | None = None) -> dict:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": ORDERS_SCHEMA if body is None else body,
        "key_properties": list(key_properties),
    }


def record(record: dict, stream: str = "orders", **extra) -> dict:
    return {"type": "RECORD", "stream": stream, "record": record, **extra}


def state(n: int) -> dict:
    return {"type": "STATE", "value": {"n": n}}


def encode(messages: list) -> bytes:
    return b"".join((m if isinstance(m, bytes) else json.dumps(m).encode()) + b"\n" for m in messages)


def run_target(lake_dir: Path, messages: list) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TARGET, "--tenant", "acme_corp", "--provider", "shopify", "--lake", str(lake_dir)],
        input=encode(messages),
        capture_output=True,
        timeout=120,
    )


def states(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def lake_contents(lake_dir: Path) -> tuple[list[dict], list[dict]]:
    """(raw records, dead letters); every key must be a well-formed raw or dead-letter key."""
    lake = LakeResource(base_uri=str(lake_dir))
    raw, letters = [], []
    for obj in lake.list(""):
        if obj.key.startswith("raw/"):
            assert RAW_KEY.match(obj.key), obj.key
            raw += decode_ndjson_gz(lake.read_bytes(obj.key))
        elif obj.key.startswith("dlq/"):
            assert DLQ_KEY.match(obj.key), obj.key
            letters += decode_ndjson_gz(lake.read_bytes(obj.key))
    return raw, letters


def assert_clean_exit(result: subprocess.CompletedProcess) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr


def test_path_like_stream_names_never_become_paths(tmp_path):
    lake_dir = tmp_path / "one" / "two" / "three" / "four" / "lake"
    bad = ["../../../../x", "a/b", "", "Orders", "x'; DROP TABLE t; --"]
    messages = [schema(), record(order(1))]
    for name in bad:
        messages += [schema(name), record(order(2), name), {"type": "ACTIVATE_VERSION", "stream": name, "version": 7}]
    messages += [record(order(3), "../../../../x"), state(1)]
    result = run_target(lake_dir, messages)
    stderr = assert_clean_exit(result)

    written = {path for path in tmp_path.rglob("*") if path.is_file()}
    assert written and all(lake_dir in path.parents for path in written), sorted(map(str, written))
    raw, letters = lake_contents(lake_dir)
    assert [r["id"] for r in raw] == [1]
    assert Counter(letter["rule"] for letter in letters) == {"invalid_name": len(bad) + 1}
    assert all("is not allowed" in letter["reason"] for letter in letters)
    assert "'a/b'" in " ".join(letter["reason"] for letter in letters)
    assert not (lake_dir / "control").exists()
    assert states(result) == [state(1)]
    assert f"{2 + len(bad)} records received, 1 landed" in stderr


def test_batch_messages_are_refused_and_no_later_state_is_printed(tmp_path):
    manifest = tmp_path / "orders-batch.jsonl.gz"
    manifest.write_bytes(gzip.compress(b"".join(json.dumps(order(i)).encode() + b"\n" for i in (10, 11))))
    batch = {
        "type": "BATCH",
        "stream": "orders",
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "manifest": [manifest.as_uri()],
    }
    messages = [schema(), record(order(1)), record(order(2)), state(1), batch, state(2), record(order(3)), state(3)]
    result = run_target(tmp_path / "lake", messages)
    stderr = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in stderr
    assert "BATCH" in stderr and "batch_config" in stderr
    assert states(result) == [state(1)]  # nothing after the refused BATCH is acknowledged
    raw, letters = lake_contents(tmp_path / "lake")
    assert sorted(r["id"] for r in raw) == [1, 2] and letters == []


def test_a_line_that_is_not_utf8_is_dead_lettered_as_received(tmp_path):
    bad_line = b'{"type": "RECORD", "stream": "orders", "record": {"id": 2, "note": "caf\xe9"}}'
    messages = [schema(), record(order(1)), bad_line, record(order(3)), state(1)]
    result = run_target(tmp_path / "lake", messages)
    stderr = assert_clean_exit(result)
    raw, letters = lake_contents(tmp_path / "lake")
    assert sorted(r["id"] for r in raw) == [1, 3]
    assert [letter["rule"] for letter in letters] == ["malformed_json"]
    assert bytes.fromhex(letters[0]["payload"]["line_hex"]) == bad_line
    assert "UTF-8" in letters[0]["reason"]
    assert states(result) == [state(1)]
    assert "3 records received, 2 landed" in stderr and "1 dead-lettered" in stderr


def test_malformed_messages_get_a_reason_each_and_the_rest_goes_on(tmp_path):
    invalid_schema = {"type": "object", "properties": {"id": {"type": "nonsense"}}}
    messages = [
        {"type": "SCHEMA", "schema": ORDERS_SCHEMA, "key_properties": ["id"]},  # no stream
        {"type": "ACTIVATE_VERSION", "version": 3},  # no stream
        {"type": "SCHEMA", "stream": "customers", "schema": invalid_schema, "key_properties": ["id"]},
        {"type": "SCHEMA", "stream": "products", "schema": "not a schema"},
        {"type": "SCHEMA", "stream": "refunds", "schema": ORDERS_SCHEMA, "key_properties": "id"},
        record({"id": 5, "updated_at": "2026-01-05T12:00:00Z"}, "customers"),
        record({"id": 6, "title": "t", "updated_at": "2026-01-05T12:00:00Z"}, "products"),
        {"type": "TELEMETRY", "stream": "orders"},
        {"type": "RECORD", "record": order(2)},  # no stream
        schema(),
        record(order(1)),
        state(1),
    ]
    result = run_target(tmp_path / "lake", messages)
    stderr = assert_clean_exit(result)
    assert "line 1: SCHEMA without a stream" in stderr
    assert "line 2: ACTIVATE_VERSION without a stream" in stderr
    assert "line 3: customers: the SCHEMA's JSON schema is invalid" in stderr
    assert "line 4: products: the SCHEMA's JSON schema is invalid" in stderr
    assert "line 5: refunds: key_properties must be a list of field names" in stderr
    assert "line 8: unknown message type 'TELEMETRY'" in stderr
    raw, letters = lake_contents(tmp_path / "lake")
    assert [r["id"] for r in raw] == [1]
    assert Counter(letter["rule"] for letter in letters) == {"invalid_schema": 2, "invalid_name": 1}
    reasons = {letter["stream"]: letter["reason"] for letter in letters}
    assert reasons.keys() == {"customers", "products", "_unknown"}
    assert "JSON schema is invalid" in reasons["customers"] and "JSON schema is invalid" in reasons["products"]
    assert reasons["_unknown"].startswith("stream name (missing) is not allowed")
    assert states(result) == [state(1)]
    assert "4 records received, 1 landed" in stderr


def test_key_properties_are_enforced_and_reasons_are_not_repeated(tmp_path):
    tap_schema = {**ORDERS_SCHEMA, "required": ["id", "created_at"]}
    messages = [
        schema(key_properties=["id", "order_number"], body=tap_schema),
        record(order(1, order_number=1001)),
        record(order(2)),  # no order_number
        record(order(3, order_number=None)),
        record({k: v for k, v in order(4, order_number=1004).items() if k != "id"}),
        state(1),
    ]
    result = run_target(tmp_path / "lake", messages)
    stderr = assert_clean_exit(result)
    raw, letters = lake_contents(tmp_path / "lake")
    assert [r["id"] for r in raw] == [1]
    assert [letter["rule"] for letter in letters] == ["schema_violation"] * 3
    reasons = Counter(letter["reason"] for letter in letters)
    assert reasons["key property 'order_number' is missing"] == 2, reasons
    (no_id,) = [reason for reason in reasons if "order_number" not in reason]
    assert no_id.count("'id' is a required property") == 1 and "key property 'id' is missing" in no_id, no_id
    assert "4 records received, 1 landed" in stderr


def test_record_versions_are_kept_and_activate_version_is_recorded(tmp_path):
    messages = [
        schema(),
        {"type": "ACTIVATE_VERSION", "stream": "orders", "version": 100},
        record(order(1), version=100),
        record(order(2), version=100),
        record(order(3)),
        {"type": "ACTIVATE_VERSION", "stream": "orders", "version": 100},
        state(1),
    ]
    result = run_target(tmp_path / "lake", messages)
    assert_clean_exit(result)
    raw, _ = lake_contents(tmp_path / "lake")
    assert {r["id"]: r.get("_sdc_table_version") for r in raw} == {1: 100, 2: 100, 3: None}
    control = tmp_path / "lake" / "control" / "acme_corp" / "shopify" / "orders" / "activate_version.json"
    assert json.loads(control.read_text()) == {"version": 100}


def test_an_unregistered_stream_is_reported_when_its_schema_arrives(tmp_path):
    target = subprocess.Popen(
        [TARGET, "--tenant", "acme_corp", "--provider", "shopify", "--lake", str(tmp_path / "lake")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.decode()) for line in target.stderr], daemon=True).start()
    try:
        target.stdin.write(encode([schema("refunds", body={"type": "object"})]))
        target.stdin.flush()
        first = lines.get(timeout=30)  # while the tap is still connected, before any record or the summary
        assert "refunds" in first and "not registered" in first
        assert "cdp schemas import --provider shopify" in first
        target.stdin.write(encode([record({"id": 1}, "refunds"), state(1)]))
        target.stdin.close()
        assert target.wait(60) == 0
    finally:
        if target.poll() is None:
            target.kill()
    _, letters = lake_contents(tmp_path / "lake")
    assert [letter["rule"] for letter in letters] == ["unknown_stream"]


def test_lines_split_across_writes_and_longer_than_the_pipe_arrive_whole(tmp_path):
    """The target reads its input in chunks of whatever the pipe holds: a message written in pieces,
    one much longer than the pipe's buffer, and a last line without a newline each arrive whole."""
    long_note = "n" * (3 << 20)
    messages = encode([schema(), record(order(1)), record(order(2, note=long_note)), record(order(3)), state(1)])
    messages += json.dumps(record(order(4))).encode()  # no newline at the end
    target = subprocess.Popen(
        [TARGET, "--tenant", "acme_corp", "--provider", "shopify", "--lake", str(tmp_path / "lake")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    piece = 7_001  # not a divisor of any line's length: every line is cut somewhere
    try:
        for start in range(0, len(messages), piece):
            target.stdin.write(messages[start : start + piece])
            target.stdin.flush()
        target.stdin.close()
        stdout, stderr = target.stdout.read(), target.stderr.read()
        assert target.wait(60) == 0, stderr.decode()[-3000:]
    finally:
        if target.poll() is None:
            target.kill()
    raw, letters = lake_contents(tmp_path / "lake")
    assert sorted(r["id"] for r in raw) == [1, 2, 3, 4] and letters == []
    assert next(r for r in raw if r["id"] == 2)["note"] == long_note
    assert [json.loads(line) for line in stdout.decode().splitlines()] == [state(1)]
