"""One destination's sync of one day: for every audience it takes, the records its mode asks for,
sent in batches; batches that cannot be delivered go to the dead-letter zone with the reason.

Modes, as in RudderStack's and Hightouch's reverse ETL: `upsert` sends members added or changed
since the export the destination last received whole, `mirror` also removes members who left, and
`full_refresh` sends every member. What the destination last received is remembered in
`activation/syncs/{destination}/{tenant}/{segment}.json`: the export last delivered whole. A sync
with failed batches (dead-lettered) leaves it where it was, so the next day's sync sends those
members again; a rerun of the same day diffs against the same earlier export and so sends the
same batches with the same idempotency keys.
"""

import json
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from cdp_activation.audiences import RAW_PII, changes_between, export_dates, read_manifest, read_members
from cdp_activation.config import Destination
from cdp_activation.senders import FileSender, HttpSender
from cdp_common.dead_letters import DeadLetterWriter
from cdp_resources.lake import LakeResource

DLQ_PROVIDER = "activation"
DELIVERY_FAILED = "delivery_failed"
INTERNAL = ("fingerprint",)


@dataclass
class AudienceSync:
    tenant: str
    segment: str
    members: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    sent: int = 0
    failed: int = 0
    batches: int = 0
    dead_letter_files: list[str] = field(default_factory=list)
    skipped: str = ""


def state_key(destination: str, tenant: str, segment: str) -> str:
    return f"activation/syncs/{destination}/{tenant}/{segment}.json"


def _records(table: pa.Table, op: str, destination: Destination) -> list[dict]:
    drop = [c for c in (*INTERNAL, *(() if destination.raw_pii else RAW_PII)) if c in table.column_names]
    return [{"op": op, **row} for row in table.drop_columns(drop).to_pylist()]


def _rows(lake: LakeResource, tenant: str, segment: str, day: date, ids: pa.Array | None):
    """The export's members (only `ids` when given), one part file at a time."""
    for part in read_members(lake, tenant, segment, day):
        yield part if ids is None else part.filter(pc.is_in(part["cdp_customer_id"], value_set=ids))


def _planned(
    lake, destination: Destination, tenant: str, segment: str, day: date, since: date | None, result: AudienceSync
):
    """(op, rows) in the order they are sent: upserts, then removals."""
    changes = changes_between(lake, tenant, segment, since, day)
    kinds = changes["change"].to_pylist()
    result.added, result.changed, result.removed = (kinds.count(k) for k in ("added", "changed", "removed"))
    if destination.mode == "full_refresh":
        yield from (("upsert", part) for part in _rows(lake, tenant, segment, day, None))
        return
    upserts = changes.filter(pc.is_in(changes["change"], value_set=pa.array(["added", "changed"])))["cdp_customer_id"]
    if len(upserts):
        yield from (("upsert", part) for part in _rows(lake, tenant, segment, day, upserts.combine_chunks()))
    removals = changes.filter(pc.equal(changes["change"], "removed"))["cdp_customer_id"]
    if destination.mode == "mirror" and len(removals):
        yield from (("remove", part) for part in _rows(lake, tenant, segment, since, removals.combine_chunks()))


def sync_audience(
    lake: LakeResource,
    destination: Destination,
    sender,
    dead_letters: DeadLetterWriter,
    tenant: str,
    segment: str,
    day: date,
) -> AudienceSync:
    result = AudienceSync(tenant, segment)
    if day not in export_dates(lake, tenant, segment):
        result.skipped = f"no export of {day}"
        return result
    state = (
        json.loads(lake.read_bytes(state_key(destination.name, tenant, segment)))
        if lake.list(state_key(destination.name, tenant, segment))
        else {}
    )
    if state and date.fromisoformat(state["date"]) > day:
        result.skipped = f"already synced the later export of {state['date']}"
        return result
    # A rerun of a day diffs against the same export as its first run; a new day diffs against the
    # last export the destination received whole, so members of failed batches are sent again.
    since_text = state.get("since") if state.get("date") == day.isoformat() else state.get("delivered")
    since = date.fromisoformat(since_text) if since_text else None
    result.members = read_manifest(lake, tenant, segment, day)["members"]
    audience = {
        "tenant": tenant,
        "segment": segment,
        "date": day.isoformat(),
        "mode": destination.mode,
        "since": since_text,
    }
    sender.clear(audience)
    pending: list[dict] = []

    def send(records: list[dict]) -> None:
        delivery = sender.send(audience, result.batches, records)
        if delivery.ok:
            result.sent += len(records)
        else:
            result.failed += len(records)
            dead_letters.add(
                json.loads(delivery.body),
                DELIVERY_FAILED,
                delivery.reason,
                destination.name,
                retry_count=delivery.tries,
                day=day,
            )
        result.batches += 1

    for op, rows in _planned(lake, destination, tenant, segment, day, since, result):
        pending += _records(rows, op, destination)
        while len(pending) >= destination.batch_size:
            send(pending[: destination.batch_size])
            pending = pending[destination.batch_size :]
    if pending:
        send(pending)
    lake.write_bytes(
        state_key(destination.name, tenant, segment),
        json.dumps(
            {
                "date": day.isoformat(),
                "since": since_text,
                "delivered": since_text if result.failed else day.isoformat(),
                "sent": result.sent,
                "failed": result.failed,
            }
        ).encode(),
    )
    return result


def sync_destination(
    lake: LakeResource, destination: Destination, audiences: list[tuple[str, str]], day: date
) -> list[AudienceSync]:
    """Sync every audience (tenant, segment) the destination takes, for the export of `day`."""
    sender = HttpSender(destination) if destination.type == "http" else FileSender(destination, lake)
    results = []
    try:
        for tenant in sorted({t for t, _ in audiences}):
            dead_letters = DeadLetterWriter(lake, tenant, DLQ_PROVIDER, f"activation/sync_{destination.name}")
            for segment in sorted(s for t, s in audiences if t == tenant and destination.wants(t, s)):
                results.append(sync_audience(lake, destination, sender, dead_letters, tenant, segment, day))
            files = dead_letters.flush()
            for result in results:
                if result.tenant == tenant and result.failed:
                    result.dead_letter_files = files
    finally:
        sender.close()
    return results
