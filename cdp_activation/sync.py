"""One destination's sync of one day: for every audience it takes, the records its mode asks for,
sent in batches; batches that cannot be delivered go to the dead-letter zone with the reason.

A destination receives only the members its purpose's consent permits (`consent.py`): what it
"has" of an audience is that part of the export, so a member who withdrew consent leaves it as a
member who left the segment does. Modes, as in RudderStack's and Hightouch's reverse ETL: `upsert`
sends members added or changed since the export the destination last received whole, `mirror`
also removes members who left (or withdrew), and `full_refresh` sends every permitted member. What the destination last received is remembered in
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

from cdp_activation.audiences import CONSENT, RAW_PII, diff, export_dates, read_manifest, read_members
from cdp_activation.config import Destination
from cdp_activation.consent import UnknownConsent, consent_column, load_unknown_consent, permitted
from cdp_activation.senders import FileSender, HttpSender
from cdp_common.dead_letters import DeadLetterWriter
from cdp_resources.lake import LakeResource

DLQ_PROVIDER = "activation"
DELIVERY_FAILED = "delivery_failed"
INTERNAL = ("fingerprint", *CONSENT)


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
    excluded_for_consent: int = 0  # members of the export the destination's purpose does not permit
    batches: int = 0
    dead_letter_files: list[str] = field(default_factory=list)
    skipped: str = ""


def state_key(destination: str, tenant: str, segment: str) -> str:
    return f"activation/syncs/{destination}/{tenant}/{segment}.json"


def _records(table: pa.Table, op: str, destination: Destination) -> list[dict]:
    drop = [c for c in (*INTERNAL, *(() if destination.raw_pii else RAW_PII)) if c in table.column_names]
    return [{"op": op, **row} for row in table.drop_columns(drop).to_pylist()]


def _rows(lake: LakeResource, tenant: str, segment: str, day: date, ids: pa.Array):
    """The export's members with these `ids`, one part file at a time."""
    for part in read_members(lake, tenant, segment, day):
        yield part.filter(pc.is_in(part["cdp_customer_id"], value_set=ids))


def _permitted_members(
    lake: LakeResource, tenant: str, segment: str, day: date | None, purpose: str, unknown_granted: bool
) -> dict[str, str]:
    """{cdp_customer_id: fingerprint} of the export's members the purpose permits (None: no export)."""
    if day is None:
        return {}
    members = {}
    for part in read_members(lake, tenant, segment, day, ["cdp_customer_id", "fingerprint", consent_column(purpose)]):
        part = part.filter(permitted(part, purpose, unknown_granted))
        members.update(zip(part["cdp_customer_id"].to_pylist(), part["fingerprint"].to_pylist(), strict=True))
    return members


def _planned(
    lake,
    destination: Destination,
    unknown_granted: tuple[bool, bool],
    tenant: str,
    segment: str,
    day: date,
    since: date | None,
    result: AudienceSync,
):
    """(op, rows) in the order they are sent: upserts, then removals. Both exports are seen as the
    destination may have them (its purpose's consent as each export recorded it, unknown consent
    granted or not as `unknown_granted` says for each), so a member who withdrew is `removed` and
    one who granted since is `added`."""
    then = _permitted_members(lake, tenant, segment, since, destination.purpose, unknown_granted[0])
    now = _permitted_members(lake, tenant, segment, day, destination.purpose, unknown_granted[1])
    result.excluded_for_consent = result.members - len(now)
    changes = diff(then, now)
    kinds = changes["change"].to_pylist()
    result.added, result.changed, result.removed = (kinds.count(k) for k in ("added", "changed", "removed"))
    if destination.mode == "full_refresh":
        upserts = pa.array(list(now), pa.string())
    else:
        upserts = changes.filter(pc.is_in(changes["change"], value_set=pa.array(["added", "changed"])))[
            "cdp_customer_id"
        ].combine_chunks()
    if len(upserts):
        yield from (("upsert", part) for part in _rows(lake, tenant, segment, day, upserts))
    removals = changes.filter(pc.equal(changes["change"], "removed"))["cdp_customer_id"]
    if destination.mode == "mirror" and len(removals):
        yield from (("remove", part) for part in _rows(lake, tenant, segment, since, removals.combine_chunks()))


def sync_audience(
    lake: LakeResource,
    destination: Destination,
    unknown_consent: UnknownConsent,
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
    rerun = state.get("date") == day.isoformat()
    since_text = state.get("since") if rerun else state.get("delivered")
    since = date.fromisoformat(since_text) if since_text else None
    # What the destination has of the `since` export depends on the unknown-consent default it was
    # sent under, which may have changed since: that one is remembered with it.
    unknown_granted = unknown_consent.grants(tenant, destination.purpose)
    since_unknown_granted = state.get(
        "since_unknown_granted" if rerun else "delivered_unknown_granted", unknown_granted
    )
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

    planned = _planned(lake, destination, (since_unknown_granted, unknown_granted), tenant, segment, day, since, result)
    for op, rows in planned:
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
                "since_unknown_granted": since_unknown_granted,
                "delivered_unknown_granted": since_unknown_granted if result.failed else unknown_granted,
                "sent": result.sent,
                "failed": result.failed,
            }
        ).encode(),
    )
    return result


def sync_destination(
    lake: LakeResource,
    destination: Destination,
    audiences: list[tuple[str, str]],
    day: date,
    unknown_consent: UnknownConsent | None = None,
) -> list[AudienceSync]:
    """Sync every audience (tenant, segment) the destination takes, for the export of `day`;
    `unknown_consent` defaults to the consent file's."""
    unknown_consent = unknown_consent or load_unknown_consent()
    sender = HttpSender(destination) if destination.type == "http" else FileSender(destination, lake)
    results = []
    try:
        for tenant in sorted({t for t, _ in audiences}):
            dead_letters = DeadLetterWriter(lake, tenant, DLQ_PROVIDER, f"activation/sync_{destination.name}")
            for segment in sorted(s for t, s in audiences if t == tenant and destination.wants(t, s)):
                results.append(
                    sync_audience(lake, destination, unknown_consent, sender, dead_letters, tenant, segment, day)
                )
            files = dead_letters.flush()
            for result in results:
                if result.tenant == tenant and result.failed:
                    result.dead_letter_files = files
    finally:
        sender.close()
    return results
