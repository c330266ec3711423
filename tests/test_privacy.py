"""Forgetting people and retention, on a copy of the whole graph's sample (`lake_daily_run`: raw,
curated, identity, profiles, warehouse, dbt, segment membership, audience exports).

Three people of the generator's truth are forgotten (one whose profile joins several sources);
then no byte of the lake copy (gunzipped raw and dead letters, every Parquet file of every Delta
version on disk, exports) and no line of a pg_dump of the warehouse copy holds their email, phone,
name or ids, everyone else's rows are unchanged, a historic re-run does not bring them back, and
their next webhook is suppressed.
"""

import gzip
import io
import json
import random
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import orjson
import psycopg
import pyarrow.parquet as pq
import pytest

from cdp_assets.privacy import process_requests
from cdp_cli.main import main as cdp_main
from cdp_common.identifiers import identifier_keys
from cdp_common.suppression import SuppressionList
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.webhooks.batcher import Batcher
from cdp_privacy.requests import enqueue, receipts
from cdp_privacy.retention import RetentionError, apply_retention, policies
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import MAP
from cdp_resources.postgres_server import find_bindir
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz, encode_ndjson_gz, raw_key
from cdp_resources.warehouse import WarehouseResource
from cdp_sampledata.dirt import phone_variant
from cdp_sampledata.population import Person
from tests.conftest import LAKE_DAILY_CONFIG, copy_database, copy_lake, run_assets
from tests.webhook_support import Service, app, post, secrets_file, shopify

TENANT = "acme_corp"
# Zones outside the platform's data: the generator's answer key (a test artefact, never ingested)
# and the tenants' company list.
NOT_PLATFORM_DATA = ("truth/", "reference/")


def truth_people(lake: LakeResource) -> list[Person]:
    rows = decode_ndjson_gz(lake.read_bytes(f"truth/{TENANT}/persons.ndjson.gz"))
    return [Person(company=None, **{k: v for k, v in row.items() if k in Person.__dataclass_fields__}) for row in rows]


class _Style(random.Random):
    """A generator whose `randrange` picks the given style: every format a source types a phone in."""

    def __init__(self, style: int):
        super().__init__(0)
        self.style = style

    def randrange(self, *args):
        return self.style


def tokens(person: Person, customer_ids: set[str], unique_names: bool) -> set[str]:
    """What must be nowhere after the person is forgotten, lower-cased."""
    found = {person.email.lower(), *(phone_variant(_Style(s), person).lower() for s in range(4)), *customer_ids}
    found |= {i.lower() for i in (person.stripe_customer_id, person.salesforce_contact_id, person.app_user_id) if i}
    found |= {i.lower() for i in person.anonymous_ids}
    if unique_names:
        found.add(f"{person.first_name} {person.last_name}".lower())
    return found


def datetime_at(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def lake_text(lake: LakeResource) -> dict[str, str]:
    """Every file of the lake as text (lower-cased): gzip unpacked, Parquet decoded row by row;
    Delta's own transaction log is left out (it holds file statistics, see docs/privacy.md)."""
    texts = {}
    for obj in lake.list(""):
        if obj.key.startswith(NOT_PLATFORM_DATA) or "/_delta_log/" in obj.key:
            continue
        data = lake.read_bytes(obj.key)
        if obj.key.endswith(".gz"):
            data = gzip.decompress(data)
        if obj.key.endswith(".parquet"):
            data = json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str).encode()
        texts[obj.key] = data.decode(errors="replace").lower()
    return texts


def pg_dump(url: str) -> str:
    dump = subprocess.run([str(find_bindir() / "pg_dump"), "--data-only", url], capture_output=True, check=True)
    return dump.stdout.decode(errors="replace").lower()


def raw_records(lake: LakeResource) -> Counter:
    records = Counter()
    for obj in lake.list(f"raw/{TENANT}/"):
        if RAW_KEY.match(obj.key):
            records.update(
                orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in decode_ndjson_gz(lake.read_bytes(obj.key))
            )
    return records


@pytest.fixture(scope="module")
def forgotten(lake_daily_run, postgres, spark, tmp_path_factory):
    """The sample copied (lake and warehouse), three people picked from the truth, one event of the
    first waiting in the webhook queue; then their three requests, queued and processed."""
    assert lake_daily_run["result"].success
    lake = copy_lake(lake_daily_run["lake"], "privacy")
    url = copy_database(postgres, lake_daily_run["warehouse"].url, "privacy_forget")
    warehouse = WarehouseResource(url=url)
    people = {p.email.lower(): p for p in truth_people(lake)}
    identity = read_delta(spark, lake, MAP).where(f"tenant_id = '{TENANT}'").toPandas()
    sources = identity.groupby("cdp_customer_id")["id_type"].nunique().sort_values(ascending=False)
    emails = {}  # profile -> the truth's email among its emails (a profile may hold a mistyped one too)
    for cid, value in identity[identity.id_type == "email"][["cdp_customer_id", "id_value"]].itertuples(index=False):
        if value in people:
            emails.setdefault(cid, value)
    profiles = [cid for cid in sources.index if cid in emails]
    merged = profiles[0]  # the profile joining the most kinds of identifier (shop, payments, CRM, app)
    with_phone = next(c for c in profiles[1:] if people[emails[c]].phone_national and people[emails[c]].app_user_id)
    third = next(c for c in profiles[1:] if c != with_phone and people[emails[c]].shopify_customer_id)
    chosen = [people[emails[c]] for c in (merged, with_phone, third)]
    assert sources[merged] >= 4, "the first person's profile joins several sources"
    ids = {p.email: {c} for p, c in zip(chosen, (merged, with_phone, third), strict=True)}

    root = tmp_path_factory.mktemp("privacy")
    secrets = secrets_file(root)
    secrets.write_text(json.dumps({TENANT: {"shopify": "shpss_t", "app": "app_t"}}))
    receiver = Service(
        {"CDP_POSTGRES_URL": url, "CDP_WEBHOOK_SECRETS_FILE": str(secrets)}, root / "receiver.log"
    ).start()
    first = chosen[0]
    waiting = {
        "message_id": "m-before",
        "type": "track",
        "event": "Signed Up",
        "user_id": first.app_user_id,
        "timestamp": "2026-01-02T09:30:00Z",
        "properties": {},
    }
    assert post(receiver.url, TENANT, "app", app(TENANT, waiting, secret="app_t")).status_code == 200

    before_raw = raw_records(lake)
    with psycopg.connect(url, autocommit=True) as conn:
        requests = [
            enqueue(conn, TENANT, "email", f"  {first.email.upper()} "),
            enqueue(conn, TENANT, "phone", chosen[1].phone_e164),
            enqueue(conn, TENANT, "shopify_customer_id", str(chosen[2].shopify_customer_id)),
        ]
    done = process_requests(spark, lake, warehouse)
    yield {
        "lake": lake,
        "original": lake_daily_run["lake"],
        "url": url,
        "people": chosen,
        "ids": ids,
        "tokens": set().union(
            *(
                tokens(
                    p,
                    ids[p.email],
                    len([q for q in people.values() if (q.first_name, q.last_name) == (p.first_name, p.last_name)])
                    == 1,
                )
                for p in chosen
            )
        ),
        "receipts": done,
        "requests": requests,
        "before_raw": before_raw,
        "receiver": receiver,
        "spark": spark,
    }
    receiver.stop()


def test_every_request_gets_a_receipt_without_personal_data(forgotten):
    assert [r["request_id"] for r in forgotten["receipts"]] == forgotten["requests"]
    first = forgotten["receipts"][0]
    assert first["profiles"] >= 1 and first["removed"]["raw"] > 0 and first["removed"]["delta_rows"] > 0
    assert first["removed"]["warehouse_rows"] > 0 and first["removed"]["webhook_queue"] == 1
    assert first["files_rewritten"] and all(
        f.startswith(("raw/", "dlq/", "audiences/", "exports/")) for f in first["files_rewritten"]
    )
    with psycopg.connect(forgotten["url"]) as conn:
        listed = receipts(conn, TENANT)
        stored = json.dumps(listed, default=str).lower()
        assert (
            conn.execute("SELECT count(*) FROM cdp_privacy.forget_requests WHERE identifier IS NOT NULL").fetchone()[0]
            == 0
        )
    assert {row["status"] for row in listed} == {"done"}
    assert not [t for t in forgotten["tokens"] if t in stored]


def test_no_byte_of_the_lake_or_the_warehouse_holds_them(forgotten):
    texts = lake_text(forgotten["lake"])
    assert any(key.startswith("curated/") and key.endswith(".parquet") for key in texts)
    leaks = {(key, token) for key, text in texts.items() for token in forgotten["tokens"] if token in text}
    assert not leaks
    dump = pg_dump(forgotten["url"])
    assert "customer_360" in dump and not [t for t in forgotten["tokens"] if t in dump]


def test_everyone_elses_records_are_unchanged(forgotten):
    """The raw records removed are exactly the three people's (by the truth), the rest are as they
    were; each curated table lost only rows and no row changed."""
    after = raw_records(forgotten["lake"])
    removed = forgotten["before_raw"] - after
    assert not after - forgotten["before_raw"]
    assert sum(removed.values()) == forgotten["receipts"][0]["removed"]["raw"]  # one batch, one count
    marks = {t for t in forgotten["tokens"]} | {
        str(p.shopify_customer_id) for p in forgotten["people"] if p.shopify_customer_id
    }
    assert all(any(m in record.decode().lower() for m in marks) for record in removed)
    spark = forgotten["spark"]
    for spec_path in ("curated/shopify_customers", "curated/orders", "curated/events", "profiles/customer_profiles"):
        before = read_delta(spark, forgotten["original"], spec_path).drop("_run_id")
        now = read_delta(spark, forgotten["lake"], spec_path).drop("_run_id")
        assert now.exceptAll(before).count() == 0, spec_path
        lost = before.count() - now.count()
        assert 0 <= lost < 200, spec_path  # the sample's orders may not be theirs
        if spec_path == "profiles/customer_profiles":
            assert lost >= 3  # each person's profile, at least


def test_their_next_webhook_is_suppressed_and_counted(forgotten):
    receiver, lake, person = forgotten["receiver"], forgotten["lake"], forgotten["people"][1]
    customer = {"id": 990001, "updated_at": "2026-01-05T12:00:00Z", "email": f" {person.email.upper()}"}
    stranger = {"id": 990002, "updated_at": "2026-01-05T12:00:00Z", "email": "someone.new@example.com"}
    for record in (customer, stranger):
        signed = shopify(TENANT, "customers/update", record, f"e{record['id']}", secret="shpss_t")
        assert post(receiver.url, TENANT, "shopify", signed).status_code == 200
    Batcher(forgotten["url"], lake, max_age_seconds=0).step()
    landed = [
        r for obj in lake.list(f"raw/{TENANT}/shopify/customers/") for r in decode_ndjson_gz(lake.read_bytes(obj.key))
    ]
    assert {r["id"] for r in landed} & {990001, 990002} == {990002}
    with psycopg.connect(forgotten["url"]) as conn:
        suppressed = conn.execute(
            "SELECT suppressed FROM cdp_webhooks.flushed WHERE tenant = %s AND provider = 'shopify'", (TENANT,)
        ).fetchone()[0]
    assert suppressed == 1


def test_a_historic_rerun_does_not_bring_them_back(forgotten, dagster_instance):
    lake, spark = forgotten["lake"], forgotten["spark"]
    last = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    result = run_assets(
        lake,
        dagster_instance,
        LAKE_DAILY_CONFIG.start,
        last,
        groups=["raw", "curated", "identity", "profiles"],
    )
    assert result.success
    identity = read_delta(spark, lake, MAP).where(f"tenant_id = '{TENANT}'")
    values = {v.lower() for v in identity.toPandas()["id_value"]}
    assert values and not values & forgotten["tokens"]
    assert not [p for p in forgotten["people"] if p.email in values]
    texts = lake_text(lake)
    assert not {
        (key, t)
        for key, text in texts.items()
        if key.startswith(("curated/", "identity/", "profiles/"))
        for t in forgotten["tokens"]
        if t in text
    }


def test_a_suppressed_person_is_dropped_at_every_entry(tmp_path):
    """The raw writer every entry shares drops (and counts) records of a person on the list,
    whatever the spelling of their email or phone, and lets everyone else through."""
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    ann = [("email", "ann@example.com"), ("phone", "+16505551212"), ("stripe_customer_id", "cus_ann")]
    SuppressionList(lake, "initech").add(key for id_type, value in ann for key in identifier_keys(id_type, value))
    writer = RawBatchWriter(lake, SchemaRegistry(), "initech", "stripe", source="test")
    base = {"object": "customer", "created": 1767607200}
    assert not writer.add("customers", {**base, "id": "cus_1", "email": " ANN@example.com"})
    assert not writer.add("customers", {**base, "id": "cus_2", "phone": "(650) 555-1212"})
    assert not writer.add("customers", {**base, "id": "cus_ann"})
    assert writer.add("customers", {**base, "id": "cus_3", "email": "bob@example.com"})
    writer.flush()
    assert writer.suppressed == Counter({"customers": 3}) and writer.dead_lettered == 0
    assert [r["id"] for obj in lake.list("raw/") for r in decode_ndjson_gz(lake.read_bytes(obj.key))] == ["cus_3"]
    assert "ann" not in lake.read_bytes("privacy/initech/suppression.json").decode()


def test_a_bad_request_is_refused_clearly(forgotten, capsys, monkeypatch):
    monkeypatch.setenv("CDP_POSTGRES_URL", forgotten["url"])
    assert cdp_main(["privacy", "forget", "--tenant", TENANT, "--external-id", "passport:X1"]) == 2
    assert "unknown identifier type 'passport'" in capsys.readouterr().err
    assert cdp_main(["privacy", "forget", "--tenant", TENANT, "--customer-id", "cdp_x"]) == 0
    assert "queued" in capsys.readouterr().out


def test_retention_deletes_what_is_older_and_refuses_a_period_inside_the_late_window(tmp_path, monkeypatch):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    today = date(2026, 6, 1)
    old, recent = today - timedelta(days=500), today - timedelta(days=10)
    for day in (old, recent):
        lake.write_bytes(raw_key(TENANT, "app", "events", day, datetime_at(day), 0), encode_ndjson_gz([{"x": 1}]))
        lake.write_bytes(
            f"dlq/{TENANT}/app/schema_violation/events/day={day}/{day:%Y%m%d}T000000Z_0000.ndjson.gz",
            encode_ndjson_gz([{}]),
        )
        lake.write_bytes(
            f"dlq/{TENANT}/activation/delivery_failed/crm/day={day}/{day:%Y%m%d}T000000Z_0000.ndjson.gz",
            encode_ndjson_gz([{}]),
        )
        lake.write_bytes(f"audiences/{TENANT}/vip/date={day}/part-00000.parquet", b"p")
    lake.write_bytes(f"audiences/{TENANT}/lapsed/date={old}/part-00000.parquet", b"p")  # its latest: kept
    removed = apply_retention(lake, policies(), today)
    assert removed == {"raw_files": 1, "dead_letter_files": 1, "activation_dead_letter_files": 1, "export_files": 1}
    assert all(
        str(old) not in k.replace("year=", "").replace("/month=", "-").replace("/day=", "-") or "lapsed" in k
        for k in (o.key for o in lake.list(""))
    )
    rules = tmp_path / "retention.yaml"
    rules.write_text(
        "defaults: {raw_days: 400, dead_letter_days: 90, audience_export_days: 90, "
        "activation_dead_letter_days: 30, delta_version_hours: 168}\ntenants: {globex: {raw_days: 2}}\n"
    )
    monkeypatch.setenv("CDP_LATE_DAYS", "3")
    with pytest.raises(RetentionError, match="raw_days=2 for globex is not longer than the late-data window"):
        policies(rules)
