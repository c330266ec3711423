"""Audience exports: every segment's members of one as-of day, with their personalisation fields,
as Parquet in the lake, and what changed against the previous export.

`audiences/{tenant}/{segment}/date=YYYY-MM-DD/` holds `part-NNNNN.parquet` (at most
`rows_per_file` members each), `changes.parquet` (cdp_customer_id, change: added | changed |
removed, against the previous export of the audience) and `_manifest.json`, written last: an
export without its manifest is incomplete. One query joins segment_membership to
marts.customer_360 in PostgreSQL and is read through a server-side cursor, so memory holds one
chunk of rows, never the audience or one query per member.
"""

import hashlib
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cdp_activation.consent import consent_column
from cdp_activation.hashing import hashed_email, hashed_phone
from cdp_resources.consent import PURPOSES
from cdp_resources.lake import LakeResource

ROOT = "audiences"
MEMBERSHIP = "segments.segment_membership"
CUSTOMERS = "marts.customer_360"
RAW_PII = ("email", "phone", "name")  # in an export only when one of its destinations takes raw PII
FIELDS = (
    "country",
    "city",
    "company_name",
    "industry",
    "accepts_marketing",
    "preferred_channel",
    "orders",
    "lifetime_revenue_usd",
    "last_order_date",
)
# Each purpose's consent (granted, denied, unknown): what a sync filters on, not a field it sends,
# so it is outside the fingerprint too (a sync compares what each destination may receive).
CONSENT = tuple(consent_column(purpose) for purpose in PURPOSES)
SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("segment", pa.string()),
        ("cdp_customer_id", pa.string()),
        ("as_of_date", pa.date32()),
        ("email_sha256", pa.string()),
        ("phone_sha256", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("name", pa.string()),
        ("country", pa.string()),
        ("city", pa.string()),
        ("company_name", pa.string()),
        ("industry", pa.string()),
        ("accepts_marketing", pa.bool_()),
        ("preferred_channel", pa.string()),
        ("orders", pa.int64()),
        ("lifetime_revenue_usd", pa.decimal128(18, 2)),
        ("last_order_date", pa.date32()),
        *((column, pa.string()) for column in CONSENT),
        ("fingerprint", pa.string()),  # of the member's exported fields: a changed fingerprint is a "changed" member
    ]
)
CHANGES = pa.schema([("cdp_customer_id", pa.string()), ("change", pa.string())])
_DATE_DIR = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/_manifest\.json$")


def audience_prefix(tenant: str, segment: str, day: date | None = None) -> str:
    return f"{ROOT}/{tenant}/{segment}/" + (f"date={day.isoformat()}/" if day else "")


@dataclass
class AudienceExport:
    tenant: str
    segment: str
    day: date
    members: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    previous: date | None = None
    raw_pii: bool = False
    files: list[str] = field(default_factory=list)

    def manifest(self) -> dict:
        return {
            "tenant": self.tenant,
            "segment": self.segment,
            "date": self.day.isoformat(),
            "members": self.members,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "raw_pii": self.raw_pii,
            "previous": self.previous.isoformat() if self.previous else None,
            "files": self.files,
        }


def export_dates(lake: LakeResource, tenant: str, segment: str) -> list[date]:
    """The days with a complete export of this audience, oldest first."""
    found = (_DATE_DIR.search(obj.key) for obj in lake.list(audience_prefix(tenant, segment)))
    return sorted(date.fromisoformat(m.group(1)) for m in found if m)


def read_manifest(lake: LakeResource, tenant: str, segment: str, day: date) -> dict:
    return json.loads(lake.read_bytes(audience_prefix(tenant, segment, day) + "_manifest.json"))


def read_parquet(lake: LakeResource, key: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(pa.BufferReader(lake.read_bytes(key)), columns=columns)


def read_members(
    lake: LakeResource, tenant: str, segment: str, day: date, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """The export's part files one at a time (bounded memory)."""
    for key in read_manifest(lake, tenant, segment, day)["files"]:
        yield read_parquet(lake, key, columns)


def _fingerprints(lake: LakeResource, tenant: str, segment: str, day: date | None) -> dict[str, str]:
    if day is None:
        return {}
    ids, prints = [], []
    for part in read_members(lake, tenant, segment, day, ["cdp_customer_id", "fingerprint"]):
        ids += part["cdp_customer_id"].to_pylist()
        prints += part["fingerprint"].to_pylist()
    return dict(zip(ids, prints, strict=True))


def diff(old: dict[str, str], new: dict[str, str]) -> pa.Table:
    """Members added, changed (fingerprint differs) and removed between two exports' {id: fingerprint}."""
    rows = (
        [(i, "added") for i in new if i not in old]
        + [(i, "changed") for i in new if i in old and old[i] != new[i]]
        + [(i, "removed") for i in old if i not in new]
    )
    rows.sort()
    return pa.table({"cdp_customer_id": [r[0] for r in rows], "change": [r[1] for r in rows]}, schema=CHANGES)


def _fingerprint(values: tuple) -> str:
    return hashlib.blake2b(repr(values).encode(), digest_size=12).hexdigest()


class _PartWriter:
    """Members of one audience into part files of at most `rows_per_file` rows, each published whole."""

    def __init__(self, lake: LakeResource, export: AudienceExport, rows_per_file: int, workdir: Path):
        self.lake, self.export, self.rows_per_file, self.workdir = lake, export, rows_per_file, workdir
        self.writer, self.rows_in_file, self.fingerprints = None, 0, {}

    def write(self, batch: pa.Table) -> None:
        self.fingerprints.update(
            zip(batch["cdp_customer_id"].to_pylist(), batch["fingerprint"].to_pylist(), strict=True)
        )
        self.export.members += batch.num_rows
        while batch.num_rows:
            if self.writer is None:
                self.name = f"part-{len(self.export.files):05d}.parquet"
                self.path = self.workdir / f"{self.export.tenant}.{self.export.segment}.{self.name}"
                self.writer, self.rows_in_file = pq.ParquetWriter(self.path, SCHEMA, compression="zstd"), 0
            room = self.rows_per_file - self.rows_in_file
            self.writer.write_table(batch.slice(0, room))
            self.rows_in_file += min(room, batch.num_rows)
            batch = batch.slice(room)
            if self.rows_in_file >= self.rows_per_file:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            key = audience_prefix(self.export.tenant, self.export.segment, self.export.day) + self.name
            self.lake.publish_file(key, self.path)
            self.path.unlink()
            self.export.files.append(key)
            self.writer = None


def _rows_to_table(rows: list[tuple], day: date, raw_pii: bool) -> pa.Table:
    """Query rows (tenant, segment, id, email, phone, name, *FIELDS, *CONSENT) as export columns, identifiers hashed."""
    columns = {name: [] for name in SCHEMA.names}
    for tenant, segment, customer, email, phone, name, *values in rows:
        fields, consent = values[: len(FIELDS)], values[len(FIELDS) :]
        country = fields[0]
        exported = (
            hashed_email(email),
            hashed_phone(phone, country),
            *((email, phone, name) if raw_pii else (None,) * 3),
            *fields,
        )
        for column, value in zip(
            (
                "tenant_id",
                "segment",
                "cdp_customer_id",
                "as_of_date",
                "email_sha256",
                "phone_sha256",
                *RAW_PII,
                *FIELDS,
                *CONSENT,
                "fingerprint",
            ),
            (tenant, segment, customer, day, *exported, *consent, _fingerprint(exported)),
            strict=True,
        ):
            columns[column].append(value)
    return pa.table(columns, schema=SCHEMA)


def audiences_of(conn, day: date) -> list[tuple[str, str]]:
    """(tenant, segment) of every audience in `day`'s membership or in the membership day before it
    (an audience that lost every member still has an export: an empty one, everyone removed)."""
    (previous_day,) = conn.execute(f"SELECT max(as_of_date) FROM {MEMBERSHIP} WHERE as_of_date < %s", (day,)).fetchone()
    return conn.execute(
        f"SELECT DISTINCT tenant_id, segment FROM {MEMBERSHIP} WHERE as_of_date IN (%s, %s) ORDER BY 1, 2",
        (day, previous_day),
    ).fetchall()


def export_audiences(
    conn,
    lake: LakeResource,
    day: date,
    raw_pii: Callable[[str, str], bool],
    rows_per_file: int = 250_000,
    chunk_rows: int = 20_000,
) -> list[AudienceExport]:
    """Export every audience of `day`'s segment membership (and every audience of the previous
    membership day, which may now be empty) and its changes against the audience's previous export."""
    exports = {pair: AudienceExport(*pair, day, raw_pii=raw_pii(*pair)) for pair in audiences_of(conn, day)}
    for export in exports.values():
        for obj in lake.list(audience_prefix(export.tenant, export.segment, day)):  # a rerun replaces the day
            lake.delete(obj.key)
    writers: dict[tuple[str, str], _PartWriter] = {}
    with tempfile.TemporaryDirectory(prefix="audiences-") as workdir, conn.cursor(name="audience_export") as cursor:
        cursor.itersize = chunk_rows
        cursor.execute(
            f"""SELECT m.tenant_id, m.segment, m.cdp_customer_id, c.email, c.phone, c.name,
                                  {", ".join(f"c.{f}" for f in FIELDS)},
                                  {", ".join(f"coalesce(c.{f}, 'unknown')" for f in CONSENT)}
                           FROM {MEMBERSHIP} m LEFT JOIN {CUSTOMERS} c USING (tenant_id, cdp_customer_id)
                           WHERE m.as_of_date = %s ORDER BY m.tenant_id, m.segment, m.cdp_customer_id""",
            (day,),
        )
        while rows := cursor.fetchmany(chunk_rows):
            for pair in dict.fromkeys((r[0], r[1]) for r in rows):  # rows come ordered by audience
                if pair not in writers:
                    if writers:
                        writers[next(reversed(writers))].close()  # the previous audience is complete
                    writers[pair] = _PartWriter(lake, exports[pair], rows_per_file, Path(workdir))
                writers[pair].write(
                    _rows_to_table([r for r in rows if (r[0], r[1]) == pair], day, exports[pair].raw_pii)
                )
        if writers:
            writers[next(reversed(writers))].close()
    for pair, export in exports.items():
        earlier = [d for d in export_dates(lake, *pair) if d < day]
        export.previous = earlier[-1] if earlier else None
        changes = diff(
            _fingerprints(lake, *pair, export.previous), writers[pair].fingerprints if pair in writers else {}
        )
        counts = Counter(changes["change"].to_pylist())
        export.added, export.changed, export.removed = (counts.get(k, 0) for k in ("added", "changed", "removed"))
        prefix = audience_prefix(*pair, day)
        sink = pa.BufferOutputStream()
        pq.write_table(changes, sink, compression="zstd")
        lake.write_bytes(prefix + "changes.parquet", sink.getvalue().to_pybytes())
        lake.write_bytes(prefix + "_manifest.json", json.dumps(export.manifest(), indent=1).encode())
    return list(exports.values())
