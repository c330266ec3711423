"""The raw batch writer every ingestion path shares (Singer target, file drops, DLQ reprocessing).

Records are validated against the stream's registered schema (and, for Singer, the tap's own
SCHEMA message); valid ones are buffered per (stream, event day) and published as NDJSON.gz files
of at most 20,000 records; invalid ones go to the dead-letter zone with the reason. `flush()`
makes everything received so far durable (raw files and dead letters) and only then returns.
A record about a person on the tenant's suppression list (`cdp_common.suppression`) is dropped,
before validation, and counted in `suppressed`: it lands neither as raw nor as a dead letter.
Files are named by `clock` and published by `publish` (`publish_new`: the first free name); the
webhook batcher passes a batch's fixed time and `publish_once`, so a repeated flush lands once.
"""

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime

from cdp_common.dead_letters import INVALID_NAME, SCHEMA_VIOLATION, UNKNOWN_STREAM, DeadLetterWriter
from cdp_common.suppression import SuppressionList
from cdp_ingest.registry import DriftReport, SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.names import InvalidName, is_valid_name
from cdp_resources.raw_zone import (
    MAX_RECORDS_PER_FILE,
    check_tenant_prefix,
    encode_ndjson_gz,
    event_day,
    publish_new,
    raw_prefix,
)


class RawBatchWriter:
    """Validated, batched writes of one tenant/provider into the raw zone."""

    def __init__(
        self,
        lake: LakeResource,
        registry: SchemaRegistry,
        tenant: str,
        provider: str,
        source: str,
        max_records: int = MAX_RECORDS_PER_FILE,
        max_age_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish: Callable = publish_new,
    ):
        self.dead_letters = DeadLetterWriter(lake, tenant, provider, source, clock, publish)  # checks the names
        self.lake, self.registry, self.tenant, self.provider = lake, registry, tenant, provider
        self.max_records, self.max_age_seconds, self.clock, self.publish = max_records, max_age_seconds, clock, publish
        self._buffers: dict[tuple[str, date], list[dict]] = defaultdict(list)
        self._oldest: float | None = None
        self.landed: Counter = Counter()  # stream -> records published
        self.drift: dict[str, DriftReport] = defaultdict(DriftReport)
        self.files: list[str] = []
        self.suppression = SuppressionList(lake, self.tenant)
        self.suppressed: Counter = Counter()  # stream -> records of forgotten people dropped

    # intake --------------------------------------------------------------------------------
    def add(
        self,
        stream: str,
        record: dict,
        extra_errors: list[str] = (),
        first_seen: str | None = None,
        retry_count: int = 0,
    ) -> bool:
        """Validate and buffer one record; True when accepted, False when dead-lettered or suppressed."""
        self._touch()
        if self.suppression.suppresses(self.provider, stream, record):
            self.suppressed[stream] += 1
            return False
        if not is_valid_name(stream):  # never a path segment
            self.dead_letters.add(
                record, INVALID_NAME, str(InvalidName("stream", stream)), None, first_seen, retry_count
            )
            return False
        if not self.registry.knows(self.provider, stream):
            self.dead_letters.add(
                record,
                UNKNOWN_STREAM,
                f"no schema registered for {self.provider}/{stream}",
                stream,
                first_seen,
                retry_count,
            )
            return False
        registered = self.registry.latest(self.provider, stream)
        if not isinstance(record, dict):
            self.dead_letters.add(record, SCHEMA_VIOLATION, "(record): not an object", stream, first_seen, retry_count)
            return False
        day = event_day(record.get(registered.event_time_field)) or self.clock().date()
        errors = [*extra_errors, *registered.errors(record)]
        if errors:
            self.dead_letters.add(record, SCHEMA_VIOLATION, "; ".join(errors), stream, first_seen, retry_count, day)
            return False
        self.drift[stream].add(record, registered.schema)
        buffer = self._buffers[(stream, day)]
        buffer.append(record)
        if len(buffer) >= self.max_records:
            self._publish(stream, day)
        return True

    def dead_letter(
        self, payload: object, rule: str, reason: str, stream: str | None, first_seen: str | None = None
    ) -> None:
        self._touch()
        self.dead_letters.add(payload, rule, reason, stream, first_seen)

    def _touch(self) -> None:
        if self._oldest is None:
            self._oldest = time.monotonic()

    # output --------------------------------------------------------------------------------
    def seconds_until_due(self) -> float:
        """How long until the oldest buffered record reaches the time limit (the limit itself when empty)."""
        if self._oldest is None:
            return self.max_age_seconds
        return self.max_age_seconds - (time.monotonic() - self._oldest)

    def due(self) -> bool:
        """True when the oldest buffered record has waited as long as the time limit allows."""
        return self._oldest is not None and self.seconds_until_due() <= 0

    def _publish(self, stream: str, day: date) -> None:
        records = self._buffers.pop((stream, day))
        key = self.publish(
            self.lake,
            check_tenant_prefix(self.tenant, raw_prefix(self.tenant, self.provider, stream, day)),
            f"{stream}_",
            self.clock(),
            encode_ndjson_gz(records),
        )
        self.files.append(key)
        self.landed[stream] += len(records)

    def flush(self) -> None:
        """Publish every buffered record and dead letter; returns once all are durable."""
        for stream, day in sorted(self._buffers):
            self._publish(stream, day)
        self.dead_letters.flush()
        self._oldest = None

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.counts.values())
