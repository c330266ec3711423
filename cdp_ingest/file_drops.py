"""File drops: CSV, JSON-lines and Parquet exports placed in a drop location become raw files.

Drop layout: `drops/{tenant}/{provider}/{stream}/{file}` in the drop location (a directory or an
S3 prefix; by default the lake itself). Each file is read, its records validated exactly like a
Singer stream (`RawBatchWriter`), and a marker `drops_processed/…/{file}@{size}-{mtime}.json`
records the outcome, so a file is processed once; a new file under the same name is a new drop.
Unreadable lines or a truncated file: what could be read lands, the rest is dead-lettered. A drop
whose tenant, provider or stream breaks the name rule (`cdp_resources.names`) is not read: its marker
records the error and the file stays where it is.
"""

import csv
import datetime as dt
import decimal
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pyarrow.parquet as pq

from cdp_common.dead_letters import MALFORMED_JSON, UNREADABLE_FILE
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeObject, LakeResource
from cdp_resources.names import InvalidName, checked_name
from cdp_resources.raw_zone import gunzip_what_you_can

DROP_KEY = re.compile(r"^drops/(?P<tenant>[^/]+)/(?P<provider>[^/]+)/(?P<stream>[^/]+)/(?P<name>[^/]+)$")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


class MalformedLine(ValueError):
    """A line of a JSON-lines drop that is not a JSON object."""


@dataclass
class DropOutcome:
    key: str
    records: int = 0
    landed: int = 0
    dead_lettered: int = 0
    suppressed: int = 0  # records about forgotten people, dropped (cdp_common.suppression)
    files: list[str] = field(default_factory=list)
    error: str | None = None


def drop_format(name: str) -> str | None:
    stem = name[:-3] if name.endswith(".gz") else name
    return next((fmt for suffix, fmt in FORMATS.items() if stem.endswith(suffix)), None)


def marker_key(obj: LakeObject) -> str:
    return f"drops_processed/{obj.key.removeprefix('drops/')}@{obj.size}-{int(obj.last_modified.timestamp())}.json"


def jsonable(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def _coerce(text: str, schema: dict):
    """A CSV cell as the type its schema names; left as text when it does not convert (validation says why)."""
    if text == "":
        return None
    kinds = schema.get("type", "string")
    kind = next((k for k in ([kinds] if isinstance(kinds, str) else kinds) if k != "null"), "string")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            return {"true": True, "false": False, "1": True, "0": False}[text.strip().lower()]
        if kind in ("object", "array"):
            return json.loads(text)
    except (ValueError, KeyError):
        return text
    return text


def csv_records(text: str, schema: dict) -> Iterator[dict]:
    """CSV rows as records; `a.b` columns become nested objects, cells typed by the schema."""
    for row in csv.DictReader(io.StringIO(text)):
        record: dict = {}
        for column, cell in row.items():
            parts, target, node = column.split("."), record, schema
            for part in parts[:-1]:
                node = node.get("properties", {}).get(part, {})
                target = target.setdefault(part, {})
            target[parts[-1]] = _coerce(cell or "", node.get("properties", {}).get(parts[-1], {}))
        yield record


def jsonl_records(text: str) -> Iterator[dict | MalformedLine]:
    for line in text.splitlines():
        if line.strip():
            try:
                record = orjson.loads(line)
                yield record if isinstance(record, dict) else MalformedLine(line)
            except orjson.JSONDecodeError:
                yield MalformedLine(line)


def read_drop(name: str, data: bytes, schema: dict) -> tuple[Iterator, str | None, str]:
    """(records, error, tail): records may include `MalformedLine`s; error when the file is damaged;
    tail is the incomplete last line of a truncated text file (kept whole for the dead-letter zone)."""
    fmt, error, tail = drop_format(name), None, ""
    if name.endswith(".gz"):
        data, error = gunzip_what_you_can(data)
    if fmt == "parquet":
        try:
            return iter(jsonable(pq.read_table(io.BytesIO(data)).to_pylist())), error, tail
        except Exception as failure:  # pyarrow raises several types for damaged files
            return iter(()), f"not a readable Parquet file: {failure}", tail
    text = data.decode("utf-8", errors="replace")
    if error and "\n" in text:  # the last line of a truncated file is incomplete: never land half a record
        text, tail = text.rsplit("\n", 1)
    return (csv_records(text, schema) if fmt == "csv" else jsonl_records(text)), error, tail


def process_drop(obj: LakeObject, drops: LakeResource, lake: LakeResource, registry: SchemaRegistry) -> DropOutcome:
    match = DROP_KEY.match(obj.key)
    outcome = DropOutcome(obj.key)
    tenant, provider, stream, name = match["tenant"], match["provider"], match["stream"], match["name"]
    try:
        for kind in ("tenant", "provider", "stream"):
            checked_name(kind, match[kind])
    except InvalidName as error:
        outcome.error = str(error)
        return outcome
    writer = RawBatchWriter(
        lake, registry, tenant, provider, source=f"drop:{drops.spark_path(obj.key)}", clock=lambda: obj.last_modified
    )
    if drop_format(name) is None:
        writer.dead_letter({"drop": obj.key}, UNREADABLE_FILE, f"unsupported file type: {name}", stream)
    else:
        schema = registry.latest(provider, stream).schema if registry.knows(provider, stream) else {}
        records, outcome.error, tail = read_drop(name, drops.read_bytes(obj.key), schema)
        for record in records:
            outcome.records += 1
            if isinstance(record, MalformedLine):
                writer.dead_letter(record.args[0], MALFORMED_JSON, "line is not a JSON object", stream)
            else:
                writer.add(stream, record)
        if outcome.error:
            writer.dead_letter({"drop": obj.key, "incomplete_line": tail}, UNREADABLE_FILE, outcome.error, stream)
    writer.flush()
    outcome.landed, outcome.dead_lettered, outcome.suppressed, outcome.files = (
        sum(writer.landed.values()),
        writer.dead_lettered,
        sum(writer.suppressed.values()),
        writer.files,
    )
    return outcome


def pending_drops(drops: LakeResource) -> list[LakeObject]:
    """Drop files without a processed marker."""
    done = {obj.key for obj in drops.list("drops_processed/")}
    return [obj for obj in drops.list("drops/") if DROP_KEY.match(obj.key) and marker_key(obj) not in done]


def process_drops(drops: LakeResource, lake: LakeResource, registry: SchemaRegistry) -> list[DropOutcome]:
    """Convert every pending drop into raw files, then mark it processed."""
    outcomes = []
    for obj in pending_drops(drops):
        outcome = process_drop(obj, drops, lake, registry)
        drops.write_bytes(marker_key(obj), json.dumps(outcome.__dict__, indent=1).encode())
        outcomes.append(outcome)
    return outcomes
