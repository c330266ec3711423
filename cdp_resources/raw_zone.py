"""The raw zone's layout and file format: NDJSON.gz, at most 20,000 records a file.

`raw/{tenant}/{provider}/{stream}/year=YYYY/month=MM/day=DD/{stream}_{utc-ts}_{seq}.ndjson.gz`

`day` is the records' event day (UTC); `utc-ts` is when the file was flushed. A record that
arrives late lands in a new file under its own, older, day, so the file's name tells it apart.
"""

import gzip
import re
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime

import orjson

MAX_RECORDS_PER_FILE = 20_000
RAW_KEY = re.compile(
    r"^raw/(?P<tenant>[^/]+)/(?P<provider>[^/]+)/(?P<stream>[^/]+)/"
    r"year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/"
    r"(?P=stream)_(?P<ts>\d{8}T\d{6}Z)_(?P<seq>\d{4,})\.ndjson\.gz$"
)


# The zones a tenant's runs (taps, drops, webhooks, reprocessing) write to, each under `{zone}/{tenant}/`.
TENANT_ZONES = ("raw", "dlq", "drops", "reference")


class TenantPrefixError(ValueError):
    """A write of one tenant's run that would land outside that tenant's own prefix."""


def check_tenant_prefix(tenant: str, key: str) -> str:
    """`key` (a lake key or prefix a run of `tenant` writes) if it lies under the tenant's own
    prefix of a tenant zone (`raw/{tenant}/…`, `dlq/{tenant}/…`, …); raises TenantPrefixError
    otherwise, so a name holding `/` or `..` cannot carry a write into another tenant's data.
    The lake's bucket policy (docs/security.md) enforces the same per tenant credential."""
    parts = key.split("/")
    if (
        len(parts) < 3
        or parts[0] not in TENANT_ZONES
        or not tenant
        or parts[1] != tenant
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts[1:-1])
    ):
        raise TenantPrefixError(f"refused a write of tenant {tenant!r} outside its own prefix: {key!r}")
    return key


def raw_prefix(tenant: str, provider: str, stream: str, day: date | None = None) -> str:
    prefix = f"raw/{tenant}/{provider}/{stream}/"
    return prefix if day is None else f"{prefix}year={day:%Y}/month={day:%m}/day={day:%d}/"


def raw_key(tenant: str, provider: str, stream: str, day: date, flushed_at: datetime, seq: int) -> str:
    return f"{raw_prefix(tenant, provider, stream, day)}{stream}_{flushed_at:%Y%m%dT%H%M%SZ}_{seq:04d}.ndjson.gz"


def encode_ndjson_gz(records: list[dict]) -> bytes:
    """Records as gzipped NDJSON; mtime 0 in the gzip header so equal input gives equal bytes."""
    body = b"".join(orjson.dumps(record) + b"\n" for record in records)
    return gzip.compress(body, compresslevel=6, mtime=0)


def decode_ndjson_gz(data: bytes) -> Iterator[dict]:
    for line in gzip.decompress(data).splitlines():
        if line:
            yield orjson.loads(line)


def batches(records: list[dict], size: int = MAX_RECORDS_PER_FILE) -> Iterator[list[dict]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def event_day(value) -> date | None:
    """The UTC day of a source timestamp (epoch s/ms, ISO 8601 with any offset or naive UTC, or a
    plain date), or None when it cannot be read."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC).date()
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value.strip())
    except (ValueError, TypeError, OverflowError, OSError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def _publish(lake, prefix: str, stem: str, flushed_at: datetime, data: bytes, seq: int, accept_identical: bool) -> str:
    while True:
        key = f"{prefix}{stem}{flushed_at:%Y%m%dT%H%M%SZ}_{seq:04d}.ndjson.gz"
        try:
            lake.write_bytes(key, data, if_absent=True)
            return key
        except FileExistsError:
            if accept_identical and lake.read_bytes(key) == data:
                return key
            seq += 1


def publish_new(lake, prefix: str, stem: str, flushed_at: datetime, data: bytes) -> str:
    """Publish `data` as `{prefix}{stem}{utc-ts}_{seq}.ndjson.gz` under the first free `seq`, never
    replacing a file another writer published in the same second. Returns the key."""
    return _publish(lake, prefix, stem, flushed_at, data, 0, accept_identical=False)


def publish_once(lake, prefix: str, stem: str, flushed_at: datetime, data: bytes, first_seq: int) -> str:
    """Publish `data` like `publish_new`, but idempotently for a caller that fixes the name: try
    `seq` = `first_seq`, `first_seq + 1`, … and stop at the first free name or at a file that already
    holds exactly `data` (the same flush repeated after a crash). Equal input therefore lands once."""
    return _publish(lake, prefix, stem, flushed_at, data, first_seq, accept_identical=True)


def gunzip_what_you_can(data: bytes) -> tuple[bytes, str | None]:
    """The decompressed bytes, and an error when the stream is truncated or corrupt part-way."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        body = inflater.decompress(data)
    except zlib.error as error:
        return b"", f"not a readable gzip file: {error}"
    if not inflater.eof:
        return body, "gzip stream is truncated: the file ends before its end-of-stream marker"
    return body, None
