"""`cdp-target`: a Singer target that lands a tap's stream in the raw zone.

    some-tap --config tap.json | cdp-target --tenant acme_corp --provider salesforce

Reads SCHEMA, RECORD, STATE and ACTIVATE_VERSION messages from stdin (Singer spec). Each RECORD is
validated against its stream's SCHEMA message (and its `key_properties`) and the registry; valid
records are batched into NDJSON.gz files (20,000 records, or every `--max-age` seconds), invalid
ones dead-lettered with the reason, as is a line that is not a Singer message (kept as received,
hex when it is not UTF-8). A STATE is written to stdout only after every record received before
it is durable in the lake, so a crashed sync resumes from the last STATE it printed and loses
nothing. BATCH messages are refused: the target stores what came before, prints the STATE
before it and stops with status 1, so no STATE after unstored data is ever printed. Other
malformed messages get a reason on stderr and the stream goes on. Settings may also come from a
Meltano-style `--config` JSON file (`tenant`, `provider`, `lake_uri`, `max_records`, …).
"""

import argparse
import contextlib
import fcntl
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from cdp_common.dead_letters import (
    BREAKING_SCHEMA_CHANGE,
    INVALID_NAME,
    INVALID_SCHEMA,
    MALFORMED_JSON,
    RECORD_BEFORE_SCHEMA,
)
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaCheck, SchemaRegistry, tap_schema_conflicts
from cdp_ingest.singer_schema import normalised
from cdp_resources.lake import LakeResource
from cdp_resources.names import InvalidName, checked_name, is_valid_name
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE
from cdp_resources.settings import default_lake_uri

# The Singer SDK's column for a record's table version (full-table syncs), kept in the raw record.
TABLE_VERSION = "_sdc_table_version"
PIPE_BYTES = 1 << 20  # Linux's default ceiling for a pipe's buffer (/proc/sys/fs/pipe-max-size)
SHORT_READ_BYTES = 1 << 16
GATHER_SECONDS = 0.005


def _line_batches(source: IO | Iterable) -> Iterator[list]:
    """The lines of `source`, in lists. A binary stream (a tap's stdout, stdin) is read in chunks of
    whatever has arrived, and after a short chunk the reader waits a moment for the writer's next
    lines to gather in the pipe: one read and one hand-over per few hundred records instead of per
    record (a tap flushes every message), at most a few milliseconds later. Anything else (lists,
    text in memory) is taken in lists of up to 1,000 lines."""
    read = getattr(source, "read1", None)
    if read is None:
        batch = []
        for line in source:
            batch.append(line)
            if len(batch) == 1_000:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):  # not a pipe, or not Linux
        fcntl.fcntl(source.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    partial: list[bytes] = []  # the start of a line that has not ended yet
    while chunk := read(PIPE_BYTES):
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            if partial:
                lines[0] = b"".join([*partial, lines[0]])
                partial.clear()
            yield lines
        if tail:
            partial.append(tail)
        if len(chunk) < SHORT_READ_BYTES:
            time.sleep(GATHER_SECONDS)
    if partial:
        yield [b"".join(partial)]


def _pump(source: IO | Iterable, lines: queue.Queue, prepare: Callable | None) -> None:
    for batch in _line_batches(source):
        lines.put(batch if prepare is None else [prepare(line) for line in batch])
    lines.put(None)


def _as_received(line: bytes | str) -> object:
    """A line for the dead-letter zone: its text, or its bytes in hex when it is not UTF-8."""
    if isinstance(line, str):
        return line.rstrip("\n")
    try:
        return line.rstrip(b"\n").decode("utf-8")
    except UnicodeDecodeError:
        return {"line_hex": line.rstrip(b"\n").hex()}


def _tap_check(schema: object, key_properties: object) -> tuple[SchemaCheck | None, str | None]:
    """The validator of a SCHEMA message, or why the message cannot be used to check records."""
    if not isinstance(schema, dict):
        return None, "the SCHEMA's JSON schema is invalid: not an object"
    if not (isinstance(key_properties, list) and all(isinstance(key, str) for key in key_properties)):
        return None, "key_properties must be a list of field names"
    schema = normalised(schema)
    try:
        validator_for(schema).check_schema(schema)
        return SchemaCheck(schema), None
    except SchemaError as error:
        return None, f"the SCHEMA's JSON schema is invalid: {error.message[:300]}"
    except Exception as error:  # whatever else in a tap's schema the validators cannot compile
        return None, f"the SCHEMA's JSON schema is invalid: {type(error).__name__}: {str(error)[:300]}"


class SingerTarget:
    """Consumes Singer messages; the counts it keeps make the summary line."""

    def __init__(self, writer: RawBatchWriter, out: IO[str], err: IO[str] = sys.stderr):
        self.writer, self.out, self.err = writer, out, err
        self.validators: dict[str, SchemaCheck] = {}
        self.key_properties: dict[str, list[str]] = {}
        self.broken: dict[str, tuple[str, str]] = {}  # stream -> (rule, reason) for all its records
        self.pending_state: dict | None = None
        self.pending_versions: dict[str, int] = {}  # ACTIVATE_VERSION, recorded once what came before is durable
        self.received = 0
        self.line_number = 0
        self.refused: str | None = None  # why the target stopped reading (a BATCH message)

    def run(self, source: IO | Iterable, prepare: Callable[[bytes], bytes | dict] | None = None) -> None:
        """Handle every message of `source` (a binary stream, or bytes or text lines), each passed through
        `prepare` first when given (on the reading thread; it may return the parsed message); flush when
        the time limit passes, even while the tap is quiet; stop early at a message that must be refused."""
        lines: queue.Queue = queue.Queue(maxsize=16)  # chunks of up to PIPE_BYTES each
        threading.Thread(target=_pump, args=(source, lines, prepare), daemon=True).start()
        while self.refused is None:
            try:
                batch = lines.get(timeout=max(0.05, self.writer.seconds_until_due()))
            except queue.Empty:
                batch = []
            if batch is None:
                break
            for line in batch:
                self.line_number += 1
                if isinstance(line, dict) or line.strip():
                    self.handle(line)
                if self.refused is not None:
                    break
            if self.writer.due():
                self.flush()
        self.flush()

    def say(self, message: str) -> None:
        print(f"cdp-target: line {self.line_number}: {message}", file=self.err, flush=True)

    def flush(self) -> None:
        self.writer.flush()
        for stream, version in self.pending_versions.items():
            key = f"control/{self.writer.tenant}/{self.writer.provider}/{stream}/activate_version.json"
            self.writer.lake.write_bytes(key, json.dumps({"version": version}).encode())
        self.pending_versions.clear()
        if self.pending_state is not None:
            self.out.write(json.dumps(self.pending_state) + "\n")
            self.out.flush()
            self.pending_state = None

    def handle(self, line: bytes | str | dict) -> None:
        """One message: a line, or a message its caller has parsed already (the managed-source runner
        reads each message's stream to rename it; parsing once spares a dump and a parse per record)."""
        try:
            message = line if isinstance(line, dict) else orjson.loads(line)
            kind = message["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            self.received += 1
            payload = line if isinstance(line, dict) else _as_received(line)
            not_utf8 = not isinstance(line, dict) and isinstance(payload, dict)
            reason = "line is not UTF-8" if not_utf8 else f"not a Singer message: {error}"
            self.writer.dead_letter(payload, MALFORMED_JSON, reason, None)
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
        elif kind == "BATCH":
            self.refused = (
                "BATCH messages (the Singer SDK's batch files) are not accepted: nothing from this line on "
                "is stored and no later STATE is printed; run the tap without `batch_config`"
            )
            self.say(self.refused)
        else:
            self.say(f"unknown message type {str(kind)[:50]!r}: ignored")

    def schema(self, message: dict) -> None:
        stream = message.get("stream")
        if stream is None:
            self.say("SCHEMA without a stream: ignored")
            return
        if not is_valid_name(stream):
            self.say(f"{InvalidName('stream', stream)}: its records are dead-lettered ({INVALID_NAME})")
            return
        schema, keys = message.get("schema"), message.get("key_properties", [])
        self.broken.pop(stream, None)
        check, problem = _tap_check(schema, keys)
        if check is None:
            self.validators.pop(stream, None)
            self.broken[stream] = (INVALID_SCHEMA, problem)
            self.say(f"{stream}: {problem}; its records are dead-lettered ({INVALID_SCHEMA})")
            return
        self.validators[stream], self.key_properties[stream] = check, keys
        provider, registry = self.writer.provider, self.writer.registry
        if not registry.knows(provider, stream):
            self.say(
                f"stream {stream!r} is not registered for provider {provider}: its records are dead-lettered "
                f"(unknown_stream); register it from the tap's catalog: cdp schemas import --provider {provider}"
            )
            return
        problems = tap_schema_conflicts(registry.latest(provider, stream).schema, schema)
        if problems:
            field_path, reason = problems[0]
            self.broken[stream] = (
                BREAKING_SCHEMA_CHANGE,
                f"tap schema conflicts with the registry: field '{field_path}' {reason}",
            )
            self.say(f"{stream}: {self.broken[stream][1]}")

    def record(self, message: dict) -> None:
        stream, record = message.get("stream"), message.get("record")
        if not is_valid_name(stream):
            self.writer.dead_letter(message, INVALID_NAME, str(InvalidName("stream", stream)), None)
        elif stream in self.broken:
            rule, reason = self.broken[stream]
            self.writer.dead_letter(record, rule, reason, stream)
        elif stream not in self.validators:
            self.writer.dead_letter(record, RECORD_BEFORE_SCHEMA, f"RECORD for {stream} before its SCHEMA", stream)
        else:
            if isinstance(record, dict) and "version" in message:
                record = {**record, TABLE_VERSION: message["version"]}
            self.writer.add(stream, record, self.errors(stream, record))

    def errors(self, stream: str, record: object) -> list[str]:
        """What the tap's own declarations say is wrong with `record` and the registry does not say
        already (the writer adds the registry's errors): missing key properties, tap schema errors."""
        if not isinstance(record, dict):
            return []  # the writer says so
        errors = [f"key property '{key}' is missing" for key in self.key_properties[stream] if record.get(key) is None]
        tap_errors = self.validators[stream].errors(record)
        if tap_errors and self.writer.registry.knows(self.writer.provider, stream):
            registry_errors = self.writer.registry.latest(self.writer.provider, stream).errors(record)
            tap_errors = [error for error in tap_errors if error not in registry_errors]
        return [*errors, *(f"tap schema: {error}" for error in tap_errors)]

    def activate_version(self, message: dict) -> None:
        """Full-table syncs: which table version is now current for the stream (see the README)."""
        stream, version = message.get("stream"), message.get("version")
        if stream is None:
            self.say("ACTIVATE_VERSION without a stream: ignored")
        elif not is_valid_name(stream):
            self.say(f"{InvalidName('stream', stream)}: ACTIVATE_VERSION ignored")
        elif not isinstance(version, int) or isinstance(version, bool):
            self.say(f"ACTIVATE_VERSION for {stream} without an integer version: ignored")
        else:
            self.pending_versions[stream] = version


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
        "tenant": config.get("tenant") if args.tenant is None else args.tenant,
        "provider": config.get("provider") if args.provider is None else args.provider,
        "lake_uri": args.lake_uri or config.get("lake_uri") or os.environ.get("CDP_LAKE_URI") or default_lake_uri(),
        "max_records": args.max_records or config.get("max_records", MAX_RECORDS_PER_FILE),
        "max_age": args.max_age or config.get("max_age_seconds", 300.0),
    }
    if merged["tenant"] is None or merged["provider"] is None:
        parser.error("--tenant and --provider are required (or 'tenant' and 'provider' in --config)")
    try:
        checked_name("tenant", merged["tenant"])
        checked_name("provider", merged["provider"])
    except InvalidName as error:
        parser.error(str(error))
    return argparse.Namespace(**merged)


def main(argv: list[str] | None = None) -> int:
    settings = _settings(argv)
    lake = LakeResource(base_uri=settings.lake_uri, s3_endpoint_url=os.environ.get("CDP_S3_ENDPOINT_URL"))
    writer = RawBatchWriter(
        lake,
        SchemaRegistry.configured(),
        settings.tenant,
        settings.provider,
        source="singer",
        max_records=min(settings.max_records, MAX_RECORDS_PER_FILE),
        max_age_seconds=settings.max_age,
    )
    target = SingerTarget(writer, sys.stdout)
    target.run(sys.stdin.buffer)  # bytes: a line that is not UTF-8 is dead-lettered, not a crash
    landed = sum(writer.landed.values())
    print(
        f"cdp-target: {target.received} records received, {landed} landed in {len(writer.files)} files, "
        f"{writer.dead_lettered} dead-lettered {dict(writer.dead_letters.counts)}, "
        f"{sum(writer.suppressed.values())} suppressed (forgotten people)",
        file=sys.stderr,
    )
    return 1 if target.refused else 0


if __name__ == "__main__":
    sys.exit(main())
