"""The dead-letter zone: every record the edge could not accept, with why, kept for reprocessing.

`dlq/{tenant}/{provider}/{error_type}/{stream}/day={day}/{utc-ts}_{seq}.ndjson.gz`, where day is
the record's event day when it can be read, else the day it was first seen, and stream is
`_unknown` when the record has no stream with a valid name (`cdp_resources.names`);
each line keeps the original payload (or raw line) with reason, rule (the error type), source,
first-seen time and retry count. Nothing the edge receives is dropped without landing here.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from cdp_resources.names import checked_name, is_valid_name
from cdp_resources.raw_zone import check_tenant_prefix, encode_ndjson_gz, publish_new

if TYPE_CHECKING:  # the lake pulls in Dagster; the webhook receiver only needs the rule names
    from cdp_resources.lake import LakeResource

MALFORMED_JSON = "malformed_json"
SCHEMA_VIOLATION = "schema_violation"
UNKNOWN_STREAM = "unknown_stream"
RECORD_BEFORE_SCHEMA = "record_before_schema"
BREAKING_SCHEMA_CHANGE = "breaking_schema_change"
UNREADABLE_FILE = "unreadable_file"
INVALID_NAME = "invalid_name"  # a stream name that breaks the name rule (`cdp_resources.names`)
INVALID_SCHEMA = "invalid_schema"  # the tap's SCHEMA message for the stream is not a usable JSON Schema
UNKNOWN_STREAM_FOLDER = "_unknown"  # where letters without a usable stream name are kept

DLQ_KEY = re.compile(
    r"^dlq/(?P<tenant>[^/]+)/(?P<provider>[^/]+)/(?P<error_type>[^/]+)/(?P<stream>[^/]+)/"
    r"day=(?P<day>\d{4}-\d{2}-\d{2})/[^/]+\.ndjson\.gz$"
)


def dlq_prefix(tenant: str = "", provider: str = "", error_type: str = "") -> str:
    return "/".join(["dlq", *(part for part in (tenant, provider, error_type) if part)]) + "/"


@dataclass
class DeadLetter:
    payload: object
    reason: str
    rule: str
    stream: str
    source: str
    first_seen: str
    retry_count: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class DeadLetterWriter:
    """Buffers dead letters of one tenant/provider and publishes them with `flush` (through `publish`,
    named by `clock`'s time: `publish_new` by default)."""

    def __init__(
        self,
        lake: LakeResource,
        tenant: str,
        provider: str,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish: Callable = publish_new,
    ):
        self.lake, self.source = lake, source
        self.tenant, self.provider = checked_name("tenant", tenant), checked_name("provider", provider)
        self.clock, self.publish = clock, publish
        self._pending: dict[tuple[str, str], list[dict]] = defaultdict(list)
        self.counts: Counter = Counter()

    def add(
        self,
        payload: object,
        rule: str,
        reason: str,
        stream: str | None,
        first_seen: str | None = None,
        retry_count: int = 0,
        day: date | None = None,
    ) -> None:
        now = self.clock()
        letter = DeadLetter(
            payload,
            reason,
            rule,
            stream if is_valid_name(stream) else UNKNOWN_STREAM_FOLDER,
            self.source,
            first_seen or now.isoformat(timespec="seconds"),
            retry_count,
        )
        self._pending[(rule, letter.stream, day or now.date())].append(letter.as_dict())
        self.counts[rule] += 1

    def flush(self) -> list[str]:
        keys = []
        now = self.clock()
        for (rule, stream, day), letters in sorted(self._pending.items()):
            prefix = check_tenant_prefix(
                self.tenant, f"{dlq_prefix(self.tenant, self.provider, rule)}{stream}/day={day.isoformat()}/"
            )
            keys.append(self.publish(self.lake, prefix, "", now, encode_ndjson_gz(letters)))
        self._pending.clear()
        return keys
