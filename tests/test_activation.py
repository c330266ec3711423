"""Activation on a small warehouse built here in SQL (customer_360 and two days of segment
membership published by `publish_membership`): audience exports and their changes against the
membership table, identifier hashing, a mirror file sync, and an HTTP destination on a real local
server that answers 429 and 500 on purpose, and one that never recovers (dead-letter zone)."""

import gzip
import json
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from cdp_activation.audiences import (
    CONSENT,
    audience_prefix,
    export_audiences,
    export_dates,
    read_manifest,
    read_members,
    read_parquet,
)
from cdp_activation.config import Destination, load_destinations
from cdp_activation.consent import UnknownConsent, load_unknown_consent
from cdp_activation.hashing import hashed_email, hashed_phone, normalise_email, normalise_phone, sha256_hex
from cdp_activation.sync import DELIVERY_FAILED, DLQ_PROVIDER, sync_destination
from cdp_assets.activation import audiences, sync_asset
from cdp_assets.dbt import MEMBERSHIP, publish_membership
from cdp_cli.demo import audience_lines
from cdp_common.dead_letters import dlq_prefix
from cdp_common.signatures import verify_timestamped
from cdp_resources.lake import LakeResource
from cdp_resources.warehouse import WarehouseResource
from tests.conftest import LAKE_DAILY_CONFIG
from tests.webhook_support import fresh_database

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
ROWS_PER_FILE = 70
CONSENT_COLUMNS = set(CONSENT)
SOURCE = {"seg_source": '"segments"."seg_source"'}
# Segment rules per day, over customers n = 1 … 600 of two tenants ('recent' empties on day 2, 'new_buyers' appears).
RULES = {
    DAY1: "SELECT 'spenders', n FROM g WHERE n % 3 = 0 UNION ALL SELECT 'recent', n FROM g WHERE n % 4 = 1",
    DAY2: "SELECT 'spenders', n FROM g WHERE n % 3 = 0 AND n <= 450 OR n % 5 = 0 UNION ALL "
    "SELECT 'new_buyers', n FROM g WHERE n % 11 = 2",
}
# Every customer granted advertising (the purpose of the destinations below that test delivery);
# email marketing: customer n denied when n % 5 = 1, unknown when n % 5 = 2, else granted.
EMAIL_CONSENT = "CASE n % 5 WHEN 1 THEN 'denied' WHEN 2 THEN 'unknown' ELSE 'granted' END"
PG_EMAIL_HASH = "encode(sha256(convert_to(lower(btrim(c.email)), 'UTF8')), 'hex')"  # the rules, written again in SQL
PG_PHONE_HASH = "encode(sha256(convert_to(ltrim(c.phone, '+'), 'UTF8')), 'hex')"


def _publish(conn, day: date) -> None:
    conn.execute("TRUNCATE segments.seg_source")
    conn.execute(f"""INSERT INTO segments.seg_source
        WITH g AS (SELECT generate_series(1, 600) AS n), picked(segment, n) AS ({RULES[day]})
        SELECT t, segment, t || '-' || n FROM picked, unnest(ARRAY['acme', 'globex']) AS t""")
    publish_membership(conn, SOURCE, day.isoformat())
    conn.commit()


def _raw_pii(tenant: str, segment: str) -> bool:
    return segment == "spenders"


@pytest.fixture(scope="module")
def world(postgres, tmp_path_factory):
    """The database after both days, the lake with both days' exports, and the customers changed in between."""
    url = fresh_database(postgres)
    lake = LakeResource(base_uri=str(tmp_path_factory.mktemp("activation") / "lake"))
    with psycopg.connect(url) as conn:
        conn.execute("CREATE SCHEMA segments; CREATE SCHEMA marts")
        conn.execute("CREATE TABLE segments.seg_source (tenant_id text, segment text, cdp_customer_id text)")
        conn.execute(f"""CREATE TABLE marts.customer_360 AS
            SELECT t AS tenant_id, t || '-' || n AS cdp_customer_id,
                   CASE WHEN n % 7 = 0 THEN '  User' || n || '@Example.COM ' WHEN n % 13 = 0 THEN NULL
                        ELSE 'user' || n || '@example.com' END AS email,
                   CASE WHEN n % 6 = 0 THEN NULL WHEN n % 9 = 0 THEN 'n/a' ELSE '+1650555' || lpad(n::text, 4, '0') END AS phone,
                   'Person ' || n AS name, 'US' AS country, 'Springfield' AS city, 'Co ' || (n % 17) AS company_name,
                   'retail' AS industry, n % 2 = 0 AS accepts_marketing, 'email' AS preferred_channel, (n % 5)::bigint AS orders,
                   (n * 3.5)::numeric(18, 2) AS lifetime_revenue_usd, DATE '2026-02-01' + n % 20 AS last_order_date,
                   {EMAIL_CONSENT} AS email_marketing_consent, 'unknown' AS sms_marketing_consent,
                   'granted' AS advertising_consent
            FROM generate_series(1, 600) AS n, unnest(ARRAY['acme', 'globex']) AS t""")
        _publish(conn, DAY1)
        day1 = export_audiences(conn, lake, DAY1, _raw_pii, rows_per_file=ROWS_PER_FILE, chunk_rows=50)
        changed = {
            r[0]
            for r in conn.execute(
                "UPDATE marts.customer_360 SET lifetime_revenue_usd = lifetime_revenue_usd + 1 "
                "WHERE split_part(cdp_customer_id, '-', 2)::int % 10 = 0 RETURNING cdp_customer_id"
            ).fetchall()
        }
        _publish(conn, DAY2)
        day2 = export_audiences(conn, lake, DAY2, _raw_pii, rows_per_file=ROWS_PER_FILE, chunk_rows=50)
    return {"url": url, "lake": lake, "changed": changed, "exports": {DAY1: day1, DAY2: day2}}


def members(world, tenant: str, segment: str, day: date) -> set[str]:
    with psycopg.connect(world["url"]) as conn:
        return {
            r[0]
            for r in conn.execute(
                f"SELECT cdp_customer_id FROM {MEMBERSHIP} WHERE tenant_id = %s AND segment = %s AND as_of_date = %s",
                (tenant, segment, day),
            ).fetchall()
        }


def exported(lake, tenant: str, segment: str, day: date) -> list[dict]:
    return [row for part in read_members(lake, tenant, segment, day) for row in part.to_pylist()]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" John_Smith@gmail.com ", "john_smith@gmail.com"),
        ("\tMIXED.Case@Example.COM\n", "mixed.case@example.com"),
        ("no-at-sign", None),
        ("   ", None),
        (None, None),
    ],
)
def test_email_normalisation(raw, expected):
    assert normalise_email(raw) == expected
    assert hashed_email(raw) == (sha256_hex(expected) if expected else None)


@pytest.mark.parametrize(
    "raw, country, expected",
    [
        ("(650)555-1212", "US", "16505551212"),
        ("+1 (650) 555-1212", None, "16505551212"),
        ("650.555.1212", "us", "16505551212"),
        ("+16505551212", None, "16505551212"),
        ("020 7946 0958", "GB", "442079460958"),
        ("+44 (0)20 7946 0958", "US", "442079460958"),
        ("0049 30 901820", "DE", "4930901820"),
        ("12", "US", None),
        ("not a phone", "US", None),
        ("6505551212", None, None),
        ("", "US", None),
    ],
)
def test_phone_normalisation(raw, country, expected):
    assert normalise_phone(raw, country) == expected
    assert hashed_phone(raw, country) == (sha256_hex(expected) if expected else None)


def test_hashes_match_the_platforms_published_examples():
    # Meta's customer information parameters page: em and ph examples with their expected SHA-256.
    assert hashed_email("John_Smith@gmail.com") == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    assert hashed_phone("(650)555-1212", "US") == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


def test_export_holds_every_member_with_fields_joined_and_identifiers_hashed(world):
    lake = world["lake"]
    with psycopg.connect(world["url"]) as conn:
        truth = {
            r[0]: r[1:]
            for r in conn.execute(
                f"SELECT cdp_customer_id, CASE WHEN c.email LIKE '%%@%%' THEN {PG_EMAIL_HASH} END, "
                f"CASE WHEN c.phone LIKE '+%%' THEN {PG_PHONE_HASH} END, c.email, c.lifetime_revenue_usd, c.company_name "
                "FROM marts.customer_360 c"
            ).fetchall()
        }
    audiences = [(e.tenant, e.segment, day) for day, exports in world["exports"].items() for e in exports]
    assert {(t, s) for t, s, _ in audiences} == {
        (t, s) for t in ("acme", "globex") for s in ("spenders", "recent", "new_buyers")
    }
    for tenant, segment, day in audiences:
        manifest = read_manifest(lake, tenant, segment, day)
        assert all(part.num_rows <= ROWS_PER_FILE for part in read_members(lake, tenant, segment, day))
        rows = exported(lake, tenant, segment, day)
        ids = [r["cdp_customer_id"] for r in rows]
        assert len(ids) == len(set(ids)) == manifest["members"]
        assert set(ids) == members(world, tenant, segment, day), (tenant, segment, day)
        assert len(manifest["files"]) == -(-manifest["members"] // ROWS_PER_FILE)
        for row in rows:
            email_hash, phone_hash, email, revenue, company = truth[row["cdp_customer_id"]]
            assert row["email_sha256"] == email_hash
            assert row["phone_sha256"] == phone_hash
            assert (row["lifetime_revenue_usd"], row["company_name"]) == (
                revenue if day == DAY2 or row["cdp_customer_id"] not in world["changed"] else revenue - 1,
                company,
            )
            assert row["email"] == (email if _raw_pii(tenant, segment) else None)
            assert row["as_of_date"] == day and (row["tenant_id"], row["segment"]) == (tenant, segment)
    assert any(len(read_manifest(lake, t, s, d)["files"]) > 1 for t, s, d in audiences)


def test_changes_against_the_previous_export(world):
    lake = world["lake"]
    for export in world["exports"][DAY2]:
        before, after = (
            members(world, export.tenant, export.segment, DAY1),
            members(world, export.tenant, export.segment, DAY2),
        )
        changes = defaultdict(set)
        for row in read_members_changes(lake, export.tenant, export.segment, DAY2):
            changes[row["change"]].add(row["cdp_customer_id"])
        assert changes["added"] == after - before
        assert changes["removed"] == before - after
        assert changes["changed"] == after & before & world["changed"]
        manifest = read_manifest(lake, export.tenant, export.segment, DAY2)
        assert (manifest["added"], manifest["removed"], manifest["changed"], manifest["members"]) == (
            len(after - before),
            len(before - after),
            len(after & before & world["changed"]),
            len(after),
        )
        assert manifest["previous"] == (DAY1.isoformat() if before else None)
    recent = read_manifest(lake, "acme", "recent", DAY2)
    assert (
        recent["members"] == 0
        and recent["files"] == []
        and recent["removed"] == len(members(world, "acme", "recent", DAY1)) > 0
    )


def read_members_changes(lake, tenant, segment, day) -> list[dict]:
    return read_parquet(lake, audience_prefix(tenant, segment, day) + "changes.parquet").to_pylist()


def test_export_to_s3_matches_the_local_export(world, s3_endpoint, s3_bucket):
    lake = LakeResource(base_uri=f"s3://{s3_bucket}/lake", s3_endpoint_url=s3_endpoint)
    with psycopg.connect(world["url"]) as conn:
        exports = export_audiences(conn, lake, DAY1, _raw_pii, rows_per_file=ROWS_PER_FILE)
    for export in exports:
        audience = (export.tenant, export.segment, DAY1)
        assert read_manifest(lake, *audience) == read_manifest(world["lake"], *audience)
        assert all(obj.key.endswith((".parquet", ".json")) for obj in lake.list(audience_prefix(*audience)))
        identifiers = [
            [(r["cdp_customer_id"], r["email_sha256"], r["phone_sha256"]) for r in exported(one, *audience)]
            for one in (lake, world["lake"])
        ]  # customer_360 changed since: compare what did not
        assert identifiers[0] == identifiers[1] and len(identifiers[0]) == export.members


def test_a_rerun_replaces_the_day(world):
    lake = world["lake"]
    keys_before = [o.key for o in lake.list(audience_prefix("acme", "spenders", DAY2))]
    manifest_before = read_manifest(lake, "acme", "spenders", DAY2)
    with psycopg.connect(world["url"]) as conn:
        export_audiences(conn, lake, DAY2, _raw_pii, rows_per_file=ROWS_PER_FILE * 2)
    after = read_manifest(lake, "acme", "spenders", DAY2)
    assert len(after["files"]) < len(manifest_before["files"])
    assert [o.key for o in lake.list(audience_prefix("acme", "spenders", DAY2)) if "/part-" in o.key] == after["files"]
    assert {k: after[k] for k in ("members", "added", "removed", "changed")} == {
        k: manifest_before[k] for k in ("members", "added", "removed", "changed")
    }
    assert export_dates(lake, "acme", "spenders") == [DAY1, DAY2] and len(keys_before) > len(after["files"])


def test_mirror_file_sync_sends_adds_changes_then_removals(world, tmp_path):
    lake = world["lake"]
    destination = Destination(
        "files",
        "file",
        mode="mirror",
        purpose="advertising",
        uri=str(tmp_path / "out"),
        batch_size=45,
        audiences=(("globex", "*"),),
    )
    target = LakeResource(base_uri=str(tmp_path / "out"))
    pairs = [(e.tenant, e.segment) for e in world["exports"][DAY2]]
    first = sync_destination(lake, destination, pairs, DAY1)
    assert {r.segment for r in first} == {"spenders", "recent", "new_buyers"} and all(
        r.tenant == "globex" for r in first
    )
    second = {r.segment: r for r in sync_destination(lake, destination, pairs, DAY2)}
    for segment, result in second.items():
        before, after = members(world, "globex", segment, DAY1), members(world, "globex", segment, DAY2)
        rows = [
            row
            for obj in target.list(f"globex/{segment}/date={DAY2}/")
            for row in pq.read_table(target.spark_path(obj.key)).to_pylist()
        ]
        ops = Counter(row["op"] for row in rows)
        assert {r["cdp_customer_id"] for r in rows if r["op"] == "upsert"} == (after - before) | (
            after & before & world["changed"]
        )
        assert {r["cdp_customer_id"] for r in rows if r["op"] == "remove"} == before - after
        assert ops["upsert"] + ops["remove"] == len(rows) == result.sent and result.failed == 0
        assert rows and all(
            not {"email", "phone", "name", "fingerprint"} & set(r) and "email_sha256" in r for r in rows
        )
        assert (result.members, result.added, result.removed) == (len(after), len(after - before), len(before - after))


def _consent_of(conn, tenant: str, segment: str, day: date) -> dict[str, str]:
    return dict(
        conn.execute(
            f"SELECT cdp_customer_id, email_marketing_consent FROM {MEMBERSHIP} JOIN marts.customer_360 "
            "USING (tenant_id, cdp_customer_id) WHERE tenant_id = %s AND segment = %s AND as_of_date = %s",
            (tenant, segment, day),
        ).fetchall()
    )


def test_consent_decides_who_a_destination_has_and_a_withdrawal_is_removed(world, tmp_path):
    """A mirror destination serving email_marketing gets granted members only (unknown ones too for
    the tenant whose default is grant); between the two days some members withdraw, some grant and
    the other tenant's default turns to grant: the second sync removes and adds exactly those."""
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    out = LakeResource(base_uri=str(tmp_path / "out"))
    destination = Destination(
        "mailer", "file", mode="mirror", purpose="email_marketing", uri=out.base_uri, audiences=(("*", "spenders"),)
    )
    pairs = [("acme", "spenders"), ("globex", "spenders")]

    def received(tenant: str, day: date) -> dict[str, set[str]]:
        rows = [r for o in out.list(f"{tenant}/spenders/date={day}/") for r in read_parquet(out, o.key).to_pylist()]
        assert not CONSENT_COLUMNS & {k for r in rows for k in r}  # what the sync filters on, not what it sends
        return {op: {r["cdp_customer_id"] for r in rows if r["op"] == op} for op in ("upsert", "remove")}

    with psycopg.connect(world["url"]) as conn:  # every change below is rolled back: the world stays as it is
        export_audiences(conn, lake, DAY1, _raw_pii)
        before = {t: _consent_of(conn, t, "spenders", DAY1) for t, _ in pairs}
        first = sync_destination(
            lake, destination, pairs, DAY1, UnknownConsent(tenants={"acme": {"email_marketing": True}})
        )
        assert received("acme", DAY1)["upsert"] == {i for i, c in before["acme"].items() if c != "denied"}
        assert received("globex", DAY1)["upsert"] == {i for i, c in before["globex"].items() if c == "granted"}
        assert [r.excluded_for_consent for r in first] == [
            sum(c == "denied" for c in before["acme"].values()),
            sum(c != "granted" for c in before["globex"].values()),
        ]
        withdrawn = conn.execute(
            "UPDATE marts.customer_360 SET email_marketing_consent = 'denied' WHERE email_marketing_consent = 'granted' "
            "AND split_part(cdp_customer_id, '-', 2)::int % 9 = 0 RETURNING tenant_id, cdp_customer_id"
        ).fetchall()
        export_audiences(conn, lake, DAY2, _raw_pii)
        after = {t: _consent_of(conn, t, "spenders", DAY2) for t, _ in pairs}
        conn.rollback()
    second = sync_destination(lake, destination, pairs, DAY2, UnknownConsent(default=True))
    for tenant, result in zip(("acme", "globex"), second, strict=True):
        had = {i for i, c in before[tenant].items() if c == "granted" or c == "unknown" and tenant == "acme"}
        has = {i for i, c in after[tenant].items() if c != "denied"}
        got = received(tenant, DAY2)
        assert got["remove"] == had - has and got["upsert"] == has - had  # fingerprints unchanged: no "changed"
        assert (result.removed, result.added, result.excluded_for_consent) == (
            len(had - has),
            len(has - had),
            len(after[tenant]) - len(has),
        )
    withdrawn_members = {i for t, i in withdrawn if i in before[t] and i in after[t]}
    assert (
        withdrawn_members and withdrawn_members <= received("acme", DAY2)["remove"] | received("globex", DAY2)["remove"]
    )


def test_unknown_consent_defaults_and_a_destination_without_purpose(tmp_path):
    assert not load_unknown_consent().grants("acme_corp", "email_marketing")  # the packaged file: deny
    own = tmp_path / "consent.yaml"
    own.write_text("unknown:\n  default: deny\n  tenants:\n    acme_corp: grant\n    globex: {advertising: grant}\n")
    policy = load_unknown_consent(own)
    assert [policy.grants("acme_corp", p) for p in ("email_marketing", "advertising")] == [True, True]
    assert [policy.grants("globex", p) for p in ("email_marketing", "advertising")] == [False, True]
    assert not policy.grants("initech", "advertising")
    for document, error in [
        ("unknown: {default: maybe}", "unknown.default must be grant or deny, not 'maybe'"),
        ("unknown: {tenants: {Acme: grant}}", "tenant name 'Acme' is not allowed"),
        ("unknown: {tenants: {acme: {postal_mail: grant}}}", "unknown purposes ['postal_mail']"),
    ]:
        own.write_text(document)
        with pytest.raises(ValueError, match=re.escape(error)):
            load_unknown_consent(own)
    with pytest.raises(ValueError, match="destination crm: purpose must be one of"):
        Destination("crm", "file")


class _Receiver(BaseHTTPRequestHandler):
    """An audience endpoint: per idempotency key, the n-th attempt gets `server.script[n]` (default 200);
    a batch is stored when its status is 200 or "store+500" (arrived, yet answered with an error)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        verify_timestamped(self.headers.get("X-CDP-Signature"), "X-CDP-Signature", body, b"s3cret", time.time(), 300)
        key = self.headers["Idempotency-Key"]
        with self.server.lock:
            attempt = self.server.attempts[key] = self.server.attempts[key] + 1
            action = self.server.script[attempt - 1] if attempt <= len(self.server.script) else "200"
            if action in ("200", "store+500") and key not in self.server.batches:
                self.server.batches[key] = json.loads(body)
        status = int(action.removeprefix("store+"))
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", self.server.retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("CDP_TEST_DESTINATION_SECRET", "s3cret")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.lock, server.attempts, server.batches, server.script, server.retry_after = (
        threading.Lock(),
        Counter(),
        {},
        [],
        "0",
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _http(server, **options) -> Destination:
    return Destination(
        "ads",
        "http",
        purpose="advertising",
        url=f"http://127.0.0.1:{server.server_port}/audiences",
        secret_env="CDP_TEST_DESTINATION_SECRET",
        backoff_seconds=0.01,
        **options,
    )


def test_http_destination_receives_every_batch_once_despite_429_and_500(world, receiver):
    receiver.script = ["429", "store+500", "500"]  # then 200: the batch arrived on the 2nd try, retried twice more
    destination = _http(receiver, mode="full_refresh", batch_size=40, max_tries=5, audiences=(("acme", "spenders"),))
    (result,) = sync_destination(world["lake"], destination, [("acme", "spenders"), ("globex", "spenders")], DAY2)
    expected = members(world, "acme", "spenders", DAY2)
    received = [r for batch in receiver.batches.values() for r in batch["records"]]
    assert Counter(r["cdp_customer_id"] for r in received) == Counter(expected)
    assert set(receiver.attempts.values()) == {4} and len(receiver.attempts) == result.batches == -(
        -len(expected) // 40
    )
    assert result.sent == len(expected) and result.failed == 0
    assert all(r["op"] == "upsert" and not {"email", "phone", "name", "fingerprint"} & set(r) for r in received)
    assert sum(r["email_sha256"] is not None for r in received) > len(received) / 2


def test_retry_after_is_honoured(world, receiver):
    receiver.script, receiver.retry_after = ["429"], "1"
    destination = _http(
        receiver, mode="full_refresh", batch_size=10_000, max_tries=2, audiences=(("acme", "new_buyers"),)
    )
    started = time.monotonic()
    (result,) = sync_destination(world["lake"], destination, [("acme", "new_buyers")], DAY2)
    assert time.monotonic() - started >= 1.0  # the backoff alone would have been about 0.01 s
    assert result.batches == 1 and result.sent == len(members(world, "acme", "new_buyers", DAY2)) and result.failed == 0


def test_http_destination_gives_up_into_the_dead_letter_zone(world, receiver):
    receiver.script = ["503"] * 10
    destination = _http(receiver, mode="upsert", batch_size=100, max_tries=3, audiences=(("globex", "new_buyers"),))
    (result,) = sync_destination(world["lake"], destination, [("globex", "new_buyers")], DAY2)
    expected = members(world, "globex", "new_buyers", DAY2)
    assert receiver.batches == {} and set(receiver.attempts.values()) == {3}
    assert result.sent == 0 and result.failed == len(expected) and result.dead_letter_files
    letters = [
        json.loads(line)
        for key in result.dead_letter_files
        for line in gzip.decompress(world["lake"].read_bytes(key)).splitlines()
    ]
    assert all(key.startswith(dlq_prefix("globex", DLQ_PROVIDER, DELIVERY_FAILED)) for key in result.dead_letter_files)
    assert {r["cdp_customer_id"] for letter in letters for r in letter["payload"]["records"]} == expected
    assert all("503" in letter["reason"] and letter["retry_count"] == 3 for letter in letters)
    assert len(letters) == len(receiver.attempts) == result.batches


def test_members_of_failed_batches_are_sent_again_the_next_day(world, receiver):
    destination = replace(
        _http(receiver, mode="upsert", batch_size=100, max_tries=2, audiences=(("acme", "spenders"),)),
        name="ads_after_outage",
    )
    before, after = members(world, "acme", "spenders", DAY1), members(world, "acme", "spenders", DAY2)
    receiver.script = ["503"] * 2  # day 1: every batch gives up
    (day1,) = sync_destination(world["lake"], destination, [("acme", "spenders")], DAY1)
    assert receiver.batches == {} and day1.sent == 0 and day1.failed == len(before) > 0
    receiver.script = []
    (day2,) = sync_destination(world["lake"], destination, [("acme", "spenders")], DAY2)
    received = Counter(r["cdp_customer_id"] for batch in receiver.batches.values() for r in batch["records"])
    assert after & before - world["changed"]  # members a plain day-2 diff would not send
    assert received == Counter(after) and day2.sent == len(after) and day2.failed == 0


def _synced_rows(lake: LakeResource, destination: str, tenant: str, segment: str, day: date) -> list[dict]:
    prefix = f"exports/{destination}/{tenant}/{segment}/date={day}/"
    return [row for obj in lake.list(prefix) for row in read_parquet(lake, obj.key).to_pylist()]


@pytest.mark.parametrize("destinations_file", ["packaged", "own file with raw_pii"])
def test_audience_and_sync_assets(world, tmp_path, monkeypatch, destinations_file):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    raw_pii = destinations_file != "packaged"
    if raw_pii:  # the packaged crm_files as a tenant's own file would declare it for its CRM import
        own = tmp_path / "destinations.yaml"
        own.write_text(
            "destinations:\n  - {name: crm_files, type: file, mode: mirror, purpose: email_marketing, raw_pii: true}\n"
        )
        monkeypatch.setenv("CDP_DESTINATIONS_FILE", str(own))
    (destination,) = load_destinations()
    assert destination.raw_pii is raw_pii and destination.purpose == "email_marketing"
    result = materialize(
        [audiences, sync_asset(destination)],
        partition_key=DAY1.isoformat(),
        instance=DagsterInstance.ephemeral(),
        resources={"lake": lake, "warehouse": WarehouseResource(url=world["url"])},
    )
    assert result.success
    exported_meta = result.asset_materializations_for_node("activation__audiences")[0].metadata
    with psycopg.connect(world["url"]) as conn:
        sizes = dict(
            conn.execute(
                f"SELECT tenant_id || '/' || segment, count(*) FROM {MEMBERSHIP} WHERE as_of_date = %s GROUP BY 1",
                (DAY1,),
            ).fetchall()
        )
    assert {k: v["members"] for k, v in exported_meta["by_audience"].value.items()} == sizes
    assert {k: v["added"] for k, v in exported_meta["by_audience"].value.items()} == sizes
    with psycopg.connect(world["url"]) as conn:
        excluded = dict(
            conn.execute(
                f"SELECT tenant_id || '/' || segment, count(*) FROM {MEMBERSHIP} JOIN marts.customer_360 "
                "USING (tenant_id, cdp_customer_id) WHERE as_of_date = %s AND email_marketing_consent <> 'granted' "
                "GROUP BY 1",
                (DAY1,),
            ).fetchall()
        )
    synced = result.asset_materializations_for_node(f"activation__sync_{destination.name}")[0].metadata
    assert {k: v["excluded_for_consent"] for k, v in synced["by_audience"].value.items()} == excluded
    assert synced["members"].value == sum(sizes.values()) and synced["failed"].value == 0
    assert synced["sent"].value == sum(sizes.values()) - sum(excluded.values()) and sum(excluded.values()) > 0
    members_exported = exported(lake, "acme", "spenders", DAY1)
    delivered = _synced_rows(lake, destination.name, "acme", "spenders", DAY1)
    granted = [r for r in members_exported if r["email_marketing_consent"] == "granted"]
    assert {r["cdp_customer_id"] for r in delivered} == {r["cdp_customer_id"] for r in granted}
    assert len(delivered) == len(granted) > 0
    assert sum(r["email_sha256"] is not None for r in delivered) > len(delivered) / 2
    if raw_pii:
        assert sum(r["email"] is not None for r in members_exported) > len(members_exported) / 2
        assert {r["email"] for r in delivered} == {r["email"] for r in granted}
    else:  # hashes only: no raw email, phone or name in the export nor at the destination
        assert all((r["email"], r["phone"], r["name"]) == (None, None, None) for r in members_exported)
        assert not {"email", "phone", "name"} & set(delivered[0])
    lines = audience_lines(lake, DAY1)  # what `cdp demo` prints at the end
    segments = sorted({key.split("/")[1] for key in sizes})
    assert [line.split()[0] for line in lines[1:]] == segments
    for line in lines[1:]:
        segment = line.split()[0]
        assert line.split(None, 1)[1] == ", ".join(
            f"{tenant} {sizes[f'{tenant}/{segment}']:,} members (+{sizes[f'{tenant}/{segment}']:,} -0)"
            for tenant in ("acme", "globex")
        )


@pytest.mark.slow
def test_audiences_carry_the_customer_360_that_dbt_builds(lake_daily_run):
    """The tests above hand-write customer_360; here it is dbt's, built by the whole `lake_daily` job
    from generated data: every member of the last day's audiences is exported once, with its
    customer_360 row's fields and identifiers hashed by the rules (written again in SQL)."""
    lake, warehouse = lake_daily_run["lake"], lake_daily_run["warehouse"]
    day = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    fields = ("country", "city", "company_name", "industry", "accepts_marketing", "preferred_channel", "orders")
    with psycopg.connect(warehouse.dsn()) as conn:
        truth = {
            r[0]: r[1:]
            for r in conn.execute(
                f"SELECT c.cdp_customer_id, CASE WHEN c.email LIKE '%%@%%' THEN {PG_EMAIL_HASH} END, "
                f"CASE WHEN c.phone LIKE '+%%' THEN {PG_PHONE_HASH} END, c.lifetime_revenue_usd, c.last_order_date, "
                f"{', '.join(f'c.{f}' for f in fields)} FROM marts.customer_360 c"
            ).fetchall()
        }
        membership = Counter(
            conn.execute(f"SELECT tenant_id, segment FROM {MEMBERSHIP} WHERE as_of_date = %s", (day,)).fetchall()
        )
    assert membership and truth
    rows = [row for tenant, segment in membership for row in exported(lake, tenant, segment, day)]
    assert Counter((r["tenant_id"], r["segment"]) for r in rows) == membership
    for row in rows:
        email_hash, phone_hash, revenue, last_order, *values = truth[row["cdp_customer_id"]]
        assert (row["email_sha256"], row["phone_sha256"]) == (email_hash, phone_hash), row["cdp_customer_id"]
        assert [row[f] for f in fields] == values and (row["lifetime_revenue_usd"], row["last_order_date"]) == (
            revenue,
            last_order,
        )
        assert (row["email"], row["phone"], row["name"]) == (None, None, None)  # the packaged destinations
    assert sum(r["email_sha256"] is not None for r in rows) > len(rows) * 0.9
    assert sum(r["orders"] > 0 for r in rows) > 0 and any(r["company_name"] for r in rows)
