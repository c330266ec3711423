"""Consent end to end on the whole `lake_daily` job's generated sample: the packaged `crm_files`
destination (purpose email_marketing) receives no member whose consent the generator's truth does
not grant, customer_360's consent agrees with that truth, and a member who unsubscribes through
campaign results (a file drop the next day) is removed by the next mirror sync."""

import json
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta

import psycopg
import pytest
from dagster import DagsterInstance

from cdp_activation.audiences import read_parquet
from cdp_identity.accuracy import TRUTH_TYPES
from cdp_ingest.file_drops import process_drops
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.raw_zone import decode_ndjson_gz
from cdp_resources.warehouse import WarehouseResource
from tests.conftest import LAKE_DAILY_CONFIG, copy_database, copy_lake, run_assets

TENANT = LAKE_DAILY_CONFIG.tenants[0]
LAST_DAY = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
NEXT_DAY = LAST_DAY + timedelta(days=1)
EXPORTS = "exports/crm_files"


def _truth(lake) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """(id_type, id_value) -> person, and person -> their email_marketing consent, from the truth files."""
    owners = {}
    for person in decode_ndjson_gz(lake.read_bytes(f"truth/{TENANT}/persons.ndjson.gz")):
        for id_type, field in TRUTH_TYPES.items():
            if person[field] is not None:
                owners[(id_type, str(person[field]))] = person["person_id"]
    consent = {
        row["person_id"]: row["status"]
        for row in decode_ndjson_gz(lake.read_bytes(f"truth/{TENANT}/consent.ndjson.gz"))
        if row["purpose"] == "email_marketing"
    }
    return owners, consent


def _received(lake, day) -> dict[str, list[dict]]:
    """What crm_files received for `day`, per audience (segment)."""
    rows = defaultdict(list)
    for obj in lake.list(f"{EXPORTS}/{TENANT}/"):
        if f"/date={day.isoformat()}/" in obj.key:
            rows[obj.key.split("/")[3]] += read_parquet(lake, obj.key).to_pylist()
    return rows


@pytest.mark.slow
def test_an_email_marketing_destination_receives_only_members_the_truth_says_granted(lake_daily_run):
    lake, warehouse, result = lake_daily_run["lake"], lake_daily_run["warehouse"], lake_daily_run["result"]
    owners, truth = _truth(lake)
    with psycopg.connect(warehouse.dsn()) as conn:
        persons = defaultdict(set)
        for customer, id_type, id_value in conn.execute(
            "SELECT cdp_customer_id, id_type, id_value FROM raw_cdp.customer_ids WHERE tenant_id = %s", (TENANT,)
        ):
            if (id_type, id_value) in owners:
                persons[customer].add(owners[(id_type, id_value)])
        consent = dict(
            conn.execute(
                "SELECT cdp_customer_id, email_marketing_consent FROM marts.customer_360 WHERE tenant_id = %s",
                (TENANT,),
            ).fetchall()
        )
    received = [row for rows in _received(lake, LAST_DAY).values() for row in rows]
    assert received and {row["op"] for row in received} == {"upsert"}
    for row in received:
        people = persons[row["cdp_customer_id"]]
        assert people and {truth[p] for p in people} == {"granted"}, (row["cdp_customer_id"], people)

    sync = result.asset_materializations_for_node("activation__sync_crm_files")[-1].metadata
    by_audience = sync["by_audience"].value
    assert sync["excluded_for_consent"].value == sum(a["excluded_for_consent"] for a in by_audience.values()) > 0
    assert all(a["sent"] == a["members"] - a["excluded_for_consent"] for a in by_audience.values())

    # customer_360 against the truth, for the profiles that are exactly one person
    single = {c: next(iter(p)) for c, p in persons.items() if len(p) == 1 and c in consent}
    agree = sum(consent[c] == truth[p] for c, p in single.items())
    statuses = {truth[p] for p in single.values()}
    assert statuses == {"granted", "denied", "unknown"} and agree / len(single) > 0.97, (agree, len(single))


@pytest.mark.slow
def test_a_member_unsubscribed_by_campaign_results_is_removed_by_the_next_mirror_sync(lake_daily_run, postgres):
    """A copy of the lake and the warehouse; the next day's file drop holds one `unsubscribed`
    result; the next day's run of the assets between the drop and the sync (raw, curated and loaded
    campaign results, the consent models, customer_360, a segment model, membership, audiences,
    crm_files) removes that member from crm_files, in every audience it is still in."""
    lake = copy_lake(lake_daily_run["lake"], "consent-unsubscribe")
    warehouse = WarehouseResource(url=copy_database(postgres, lake_daily_run["warehouse"].dsn(), "consent_unsubscribe"))

    before = _received(lake, LAST_DAY)
    segment = sorted(s for s in before if s.startswith("country_"))[0]
    member = next(row for row in sorted(before[segment], key=lambda r: r["cdp_customer_id"]) if row["email_sha256"])
    unsubscribed_at = datetime.combine(NEXT_DAY, time(9), UTC)
    result = {
        "event_id": "unsubscribe-1",
        "campaign_id": f"{NEXT_DAY}-newsletter",
        "destination": "crm_files",
        "segment": segment,
        "cdp_customer_id": None,
        "email_sha256": member["email_sha256"],
        "event_type": "unsubscribed",
        "occurred_at": unsubscribed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    lake.write_bytes(f"drops/{TENANT}/campaigns/results/unsubscribes.jsonl", json.dumps(result).encode())
    (outcome,) = process_drops(lake, lake, SchemaRegistry())
    assert outcome.landed == 1

    run = run_assets(
        lake,
        DagsterInstance.ephemeral(),
        NEXT_DAY,
        NEXT_DAY,
        selection=[
            "raw/campaigns/results",
            "curated/campaign_results",
            "warehouse/campaign_results",
            "staging/stg_consent_statements",
            "intermediate/int_consent_statements",
            "marts/consent_history",
            "marts/customer_360",
            "segments/segment_demographic",
            "segments/segment_membership",
            "activation/audiences",
            "activation/sync_crm_files",
        ],
        warehouse=warehouse,
    )
    assert run.success
    with psycopg.connect(warehouse.dsn()) as conn:
        (consent,) = conn.execute(
            "SELECT email_marketing_consent FROM marts.customer_360 WHERE tenant_id = %s AND cdp_customer_id = %s",
            (TENANT, member["cdp_customer_id"]),
        ).fetchone()
        history = conn.execute(
            "SELECT status, source, stated_at, valid_until FROM marts.consent_history "
            "WHERE tenant_id = %s AND cdp_customer_id = %s AND purpose = 'email_marketing' ORDER BY stated_at",
            (TENANT, member["cdp_customer_id"]),
        ).fetchall()
        still_in = {
            s
            for (s,) in conn.execute(
                "SELECT segment FROM segments.segment_membership WHERE tenant_id = %s AND cdp_customer_id = %s "
                "AND as_of_date = %s",
                (TENANT, member["cdp_customer_id"], NEXT_DAY),
            )
        }
    assert consent == "denied"
    assert history[-1] == ("denied", "campaign_unsubscribe", unsubscribed_at, None)
    assert history[-2][0] == "granted" and history[-2][3] == unsubscribed_at  # what crm_files had sent them under
    after = _received(lake, NEXT_DAY)
    had = {s for s, rows in before.items() if any(r["cdp_customer_id"] == member["cdp_customer_id"] for r in rows)}
    assert segment in still_in and had & still_in
    for audience in had & still_in:
        ops = [r["op"] for r in after[audience] if r["cdp_customer_id"] == member["cdp_customer_id"]]
        assert ops == ["remove"], audience
    assert not any(
        r["cdp_customer_id"] == member["cdp_customer_id"] and r["op"] == "upsert"
        for rows in after.values()
        for r in rows
    )
