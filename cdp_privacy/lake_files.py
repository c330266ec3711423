"""Erasure in the lake's files: raw NDJSON.gz, the edge's and activation's dead letters, audience
exports and file-destination exports, each rewritten without the person's records.

A file that holds none of them is left as it is; one that does is replaced at the same key in one
atomic publish (`LakeResource.write_bytes`: a reader sees the old file or the new one), so the
layout, names and event days stay; a file left with no record is deleted. A rewritten raw file's
entry in its day's manifest gets the new bytes and record count and a `forgotten` count, so the
curated reconciliation (raw = curated + dead-lettered + duplicates) holds before the next run.
"""

import io
import json
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cdp_common.dead_letters import DLQ_KEY
from cdp_common.identifiers import RAW_IDENTIFIERS, any_value_keys, record_keys, value_keys
from cdp_ingest.manifests import manifest_key
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, encode_ndjson_gz, gunzip_what_you_can

ACTIVATION_PROVIDER = "activation"  # cdp_activation.sync's dead letters: dlq/{tenant}/activation/…
# Parquet columns of audience and file exports that identify a member, and how to read them.
# A value searched for in unparsable text must be this long: shorter ids occur in any line.
MIN_TEXT_MATCH = 6
EXPORT_COLUMNS = {
    "cdp_customer_id": "id",
    "email": "email",
    "email_sha256": "email_sha256",
    "phone": "phone",
    "phone_sha256": "phone_sha256",
}


@dataclass
class FileErasure:
    """What one zone's rewrite removed: records per zone, and the keys rewritten or deleted."""

    removed: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)


def _lines(data: bytes) -> list[bytes]:
    body, _ = gunzip_what_you_can(data)
    return [line for line in body.splitlines() if line]


def _replace(lake: LakeResource, key: str, kept: list, encoded: bytes) -> None:
    if kept:
        lake.write_bytes(key, encoded)
    else:
        lake.delete(key)


def erase_raw(lake: LakeResource, tenant: str, keys: set[str], result: FileErasure) -> None:
    """Every raw file of `tenant` without the records carrying one of the person's `keys`."""
    manifests: dict[str, dict[str, tuple[int, int]]] = {}
    for obj in lake.list(f"raw/{tenant}/"):
        match = RAW_KEY.match(obj.key)
        if not match or (match["provider"], match["stream"]) not in RAW_IDENTIFIERS:
            continue
        records = [orjson.loads(line) for line in _lines(lake.read_bytes(obj.key))]
        kept = [r for r in records if not record_keys(match["provider"], match["stream"], r) & keys]
        if len(kept) == len(records):
            continue
        encoded = encode_ndjson_gz(kept)
        _replace(lake, obj.key, kept, encoded)
        result.removed["raw"] += len(records) - len(kept)
        result.files.append(obj.key)
        day = f"{match['year']}-{match['month']}-{match['day']}"
        manifest = manifest_key(match["provider"], match["stream"], day)
        manifests.setdefault(manifest, {})[obj.key] = (len(encoded) if kept else 0, len(records) - len(kept))
    for key, changes in manifests.items():
        _update_manifest(lake, key, changes)


def _update_manifest(lake: LakeResource, key: str, changes: dict[str, tuple[int, int]]) -> None:
    if not lake.list(key):
        return  # the raw asset has not listed that day yet; its first listing sees the rewritten files
    manifest = json.loads(lake.read_bytes(key))
    for entry in manifest["files"]:
        if entry["key"] in changes:
            size, forgotten = changes[entry["key"]]
            entry["bytes"], entry["records"] = size, entry["records"] - forgotten
            entry["forgotten"] = entry.get("forgotten", 0) + forgotten
    manifest["files"] = [e for e in manifest["files"] if e["bytes"] or e["key"] not in changes]
    lake.write_bytes(key, json.dumps(manifest, indent=1).encode())


def _letter_without(letter: dict, provider: str, keys: set[str]) -> tuple[dict | None, int]:
    """The dead letter without the person (None when its record is theirs) and how many of their
    records it held; an activation letter (a batch as sent) keeps the other members of its batch."""
    payload = letter.get("payload")
    if provider == ACTIVATION_PROVIDER and isinstance(payload, dict) and isinstance(payload.get("records"), list):
        members = [r for r in payload["records"] if not any_value_keys(r) & keys]
        removed = len(payload["records"]) - len(members)
        if not removed:
            return letter, 0
        return ({**letter, "payload": {**payload, "records": members}} if members else None), removed
    if isinstance(payload, str):  # a line as received: parsed if it can be, else its text is searched
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            text = payload.lower()
            values = (key.split(":", 1)[1] for key in keys)
            return (None, 1) if any(len(v) >= MIN_TEXT_MATCH and v in text for v in values) else (letter, 0)
    found = record_keys(provider, letter.get("stream", ""), payload) | any_value_keys(payload)
    return (None, 1) if found & keys else (letter, 0)


def erase_dead_letters(lake: LakeResource, tenant: str, keys: set[str], result: FileErasure) -> None:
    """Every dead letter of `tenant` (the edge's and activation's) without the person's."""
    for obj in lake.list(f"dlq/{tenant}/"):
        match = DLQ_KEY.match(obj.key)
        if not match:
            continue
        letters = [orjson.loads(line) for line in _lines(lake.read_bytes(obj.key))]
        outcomes = [_letter_without(letter, match["provider"], keys) for letter in letters]
        removed = sum(count for _, count in outcomes)
        if not removed:
            continue
        kept = [letter for letter, _ in outcomes if letter is not None]
        zone = "activation_dead_letters" if match["provider"] == ACTIVATION_PROVIDER else "dead_letters"
        result.removed[zone] += removed
        _replace(lake, obj.key, kept, encode_ndjson_gz(kept))
        result.files.append(obj.key)


def _member_mask(table: pa.Table, keys: set[str]) -> list[bool]:
    """True for the rows of an export that are the person's."""
    mask = [False] * table.num_rows
    for column, kind in EXPORT_COLUMNS.items():
        if column in table.column_names:
            for i, value in enumerate(table.column(column).to_pylist()):
                mask[i] = mask[i] or bool(set(value_keys(kind, value)) & keys)
    return mask


def erase_parquet(lake: LakeResource, prefix: str, zone: str, keys: set[str], result: FileErasure) -> None:
    """Every Parquet file under `prefix` without the person's rows; an audience's manifest counts
    its members again."""
    members_removed: Counter = Counter()
    for obj in lake.list(prefix):
        if not obj.key.endswith(".parquet"):
            continue
        table = pq.read_table(io.BytesIO(lake.read_bytes(obj.key)))
        mask = _member_mask(table, keys)
        if not any(mask):
            continue
        kept = table.filter(pa.array([not m for m in mask]))
        sink = pa.BufferOutputStream()
        pq.write_table(kept, sink, compression="zstd")
        lake.write_bytes(obj.key, sink.getvalue().to_pybytes())
        result.removed[zone] += sum(mask)
        result.files.append(obj.key)
        if obj.key.rsplit("/", 1)[-1].startswith("part-"):
            members_removed[obj.key.rsplit("/", 1)[0] + "/_manifest.json"] += sum(mask)
    for key, removed in members_removed.items():
        if lake.list(key):
            manifest = json.loads(lake.read_bytes(key))
            manifest["members"] -= removed
            lake.write_bytes(key, json.dumps(manifest, indent=1).encode())
