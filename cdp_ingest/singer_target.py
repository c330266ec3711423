"""`cdp-target`: a Singer target that lands a tap's stream in the raw zone.

    some-tap --config tap.json | cdp-target --tenant acme_corp --provider salesforce

Reads SCHEMA, RECORD, STATE and ACTIVATE_VERSION messages from stdin (Singer spec). Each RECORD is
validated against its stream's SCHEMA message and the registry; valid records are batched into
NDJSON.gz files (20,000 records, or every `--max-age` seconds), invalid ones dead-lettered. A STATE
is written to stdout only after every record received before it is durable in the lake, so a
crashed sync resumes from the last STATE it printed and loses nothing. Settings may also come
from a Meltano-style `--config` JSON file (`tenant`, `provider`, `lake_uri`, `max_records`, …).
"""

import argparse
import json
import os
import queue
import sys
import threading
from pathlib import Path
from typing import IO

import orjson

from cdp_common.dead_letters import BREAKING_SCHEMA_CHANGE, MALFORMED_JSON, RECORD_BEFORE_SCHEMA
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaCheck, SchemaRegistry, tap_schema_conflicts
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE
from cdp_resources.settings import default_lake_uri


def _pump(source: IO[str], lines: queue.Queue) -> None:
    for line in source:
        lines.put(line)
    lines.put(None)


class SingerTarget:
    """Consumes Singer messages; `run` returns the counts for the summary line."""

    def __init__(self, writer: RawBatchWriter, out: IO[str]):
        self.writer, self.out = writer, out
        self.validators: dict[str, SchemaCheck] = {}
        self.broken: dict[str, str] = {}  # stream -> why its tap schema breaks the registry
        self.pending_state: dict | None = None
        self.received = 0

    def run(self, source: IO[str]) -> None:
        """Handle every message of `source`; flush when the time limit passes, even while the tap is quiet."""
        lines: queue.Queue = queue.Queue(maxsize=10_000)
        threading.Thread(target=_pump, args=(source, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=max(0.05, self.writer.seconds_until_due()))
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.strip():
                self.handle(line)
            if self.writer.due():
                self.flush()
        self.flush()

    def flush(self) -> None:
        self.writer.flush()
        if self.pending_state is not None:
            self.out.write(json.dumps(self.pending_state) + "\n")
            self.out.flush()
            self.pending_state = None

    def handle(self, line: str) -> None:
        try:
            message = orjson.loads(line)
            kind = message["type"]
        except (ValueError, KeyError, TypeError) as error:
            self.received += 1
            self.writer.dead_letter(line.rstrip("\n"), MALFORMED_JSON, f"not a Singer message: {error}", None)
            return
        if kind == "RECORD":
            self.received += 1
            self.record(message)
        elif kind == "SCHEMA":
            self.schema(message)
        elif kind == "STATE":
            self.pending_state = {"type": "STATE", "value": message.get("value")}
        elif kind == "ACTIVATE_VERSION":
            self.activate_version(message)

    def schema(self, message: dict) -> None:
        stream, schema = message["stream"], message.get("schema", {})
        self.validators[stream] = SchemaCheck(schema)
        self.broken.pop(stream, None)
        if self.writer.registry.knows(self.writer.provider, stream):
            registered = self.writer.registry.latest(self.writer.provider, stream).schema
            problems = tap_schema_conflicts(registered, schema)
            if problems:
                field_path, reason = problems[0]
                self.broken[stream] = f"tap schema conflicts with the registry: field '{field_path}' {reason}"
                print(f"cdp-target: {stream}: {self.broken[stream]}", file=sys.stderr)

    def record(self, message: dict) -> None:
        stream, record = message.get("stream"), message.get("record")
        if stream not in self.validators:
            self.writer.dead_letter(record, RECORD_BEFORE_SCHEMA, f"RECORD for {stream} before its SCHEMA", stream)
        elif stream in self.broken:
            self.writer.dead_letter(record, BREAKING_SCHEMA_CHANGE, self.broken[stream], stream)
        else:
            tap_errors = [f"tap schema: {error}" for error in self.validators[stream].errors(record)]
            self.writer.add(stream, record, tap_errors)

    def activate_version(self, message: dict) -> None:
        """Full-table syncs: record which table version is now current for the stream."""
        key = f"control/{self.writer.tenant}/{self.writer.provider}/{message['stream']}/activate_version.json"
        self.writer.lake.write_bytes(key, json.dumps({"version": message.get("version")}).encode())


def _settings(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cdp-target", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON file with any of the settings below (Meltano passes this)")
    parser.add_argument("--tenant")
    parser.add_argument("--provider")
    parser.add_argument("--lake", dest="lake_uri")
    parser.add_argument("--max-records", type=int)
    parser.add_argument("--max-age", type=float, help="seconds a record may wait before a flush (default 300)")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text()) if args.config else {}
    merged = {
        "tenant": args.tenant or config.get("tenant"),
        "provider": args.provider or config.get("provider"),
        "lake_uri": args.lake_uri or config.get("lake_uri") or os.environ.get("CDP_LAKE_URI") or default_lake_uri(),
        "max_records": args.max_records or config.get("max_records", MAX_RECORDS_PER_FILE),
        "max_age": args.max_age or config.get("max_age_seconds", 300.0),
    }
    if not merged["tenant"] or not merged["provider"]:
        parser.error("--tenant and --provider are required (or 'tenant' and 'provider' in --config)")
    return argparse.Namespace(**merged)


def main(argv: list[str] | None = None) -> int:
    settings = _settings(argv)
    lake = LakeResource(base_uri=settings.lake_uri, s3_endpoint_url=os.environ.get("CDP_S3_ENDPOINT_URL"))
    writer = RawBatchWriter(
        lake,
        SchemaRegistry(),
        settings.tenant,
        settings.provider,
        source="singer",
        max_records=min(settings.max_records, MAX_RECORDS_PER_FILE),
        max_age_seconds=settings.max_age,
    )
    target = SingerTarget(writer, sys.stdout)
    target.run(sys.stdin)
    landed = sum(writer.landed.values())
    print(
        f"cdp-target: {target.received} records received, {landed} landed in {len(writer.files)} files, "
        f"{writer.dead_lettered} dead-lettered {dict(writer.dead_letters.counts)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
