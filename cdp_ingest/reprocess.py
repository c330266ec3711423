"""Resubmit dead letters (after a schema or data fix) through the same validation.

What passes lands in the raw zone; what still fails goes back to the dead-letter zone with its
retry count raised and its first-seen time kept (a letter whose stream name breaks the name rule
cannot pass and is kept as it was). A dead-letter file is deleted only after
everything it held is durable again, so a crash can repeat a record but never lose one.
"""

import json
from collections import Counter
from dataclasses import dataclass, field

from cdp_common.dead_letters import (
    DLQ_KEY,
    INVALID_NAME,
    MALFORMED_JSON,
    UNKNOWN_STREAM_FOLDER,
    UNREADABLE_FILE,
    dlq_prefix,
)
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.names import checked_name
from cdp_resources.raw_zone import decode_ndjson_gz


@dataclass
class ReprocessOutcome:
    resubmitted: int = 0
    landed: Counter = field(default_factory=Counter)
    still_failing: Counter = field(default_factory=Counter)
    suppressed: Counter = field(default_factory=Counter)  # about forgotten people: dropped


def _as_record(letter: dict) -> tuple[str | None, object]:
    """The stream and record a dead letter holds (no stream: it cannot pass and is kept as it was);
    a malformed line is re-read as a Singer RECORD."""
    payload = letter["payload"]
    stream = None if letter["stream"] == UNKNOWN_STREAM_FOLDER else letter["stream"]
    if letter["rule"] == MALFORMED_JSON:
        if not isinstance(payload, str):  # bytes that were not UTF-8, kept in hex: still not JSON
            return None, payload
        try:
            message = json.loads(payload)
        except ValueError:
            return None, payload
        if isinstance(message, dict) and message.get("type") == "RECORD":
            return message.get("stream"), message.get("record")
        return (stream, message) if isinstance(message, dict) else (None, payload)
    return stream, payload


def reprocess(
    lake: LakeResource,
    registry: SchemaRegistry,
    tenant: str,
    provider: str,
    error_type: str | None = None,
    stream: str | None = None,
) -> ReprocessOutcome:
    checked_name("tenant", tenant)
    checked_name("provider", provider)
    for kind, name in (("rule", error_type), ("stream", stream)):
        if name is not None:
            checked_name(kind, name)
    outcome = ReprocessOutcome()
    for obj in lake.list(dlq_prefix(tenant, provider, error_type or "")):
        match = DLQ_KEY.match(obj.key)
        if not match or (stream and match["stream"] != stream):
            continue
        writer = RawBatchWriter(lake, registry, tenant, provider, source="dlq-reprocess")
        for letter in decode_ndjson_gz(lake.read_bytes(obj.key)):
            outcome.resubmitted += 1
            record_stream, record = _as_record(letter)
            retry = letter["retry_count"] + 1
            if (
                letter["rule"] in (UNREADABLE_FILE, INVALID_NAME)
                or record_stream is None
                or not isinstance(record, dict)
            ):
                writer.dead_letters.add(
                    letter["payload"], letter["rule"], letter["reason"], letter["stream"], letter["first_seen"], retry
                )
            else:
                writer.add(record_stream, record, first_seen=letter["first_seen"], retry_count=retry)
        writer.flush()
        lake.delete(obj.key)
        outcome.landed.update(writer.landed)
        outcome.still_failing.update(writer.dead_letters.counts)
        outcome.suppressed.update(writer.suppressed)
    return outcome
