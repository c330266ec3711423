"""The sample-data generator: same seed, same bytes; dirt at its set rates (±1 point), measured
from the raw files themselves and matching the ground truth written beside them."""

import hashlib
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import phonenumbers
import pytest

from cdp_activation.hashing import sha256_hex
from cdp_resources.consent import PURPOSES
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE, RAW_KEY, decode_ndjson_gz
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.generator import GeneratorConfig, generate
from cdp_sampledata.streams import DRIFT_FIELD

RATES = DirtRates()
CONFIG = GeneratorConfig(tenants=("acme_corp",), days=3, customers=30_000, seed=11)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    lake = LakeResource(base_uri=str(tmp_path_factory.mktemp("gen") / "lake"))
    summary = generate(lake, CONFIG, workers=2, progress=False)
    raw = defaultdict(list)  # "provider/stream" -> [(day in the layout, arrival day, record)]
    file_sizes = Counter()
    for obj in lake.list("raw/"):
        match = RAW_KEY.match(obj.key)
        assert match, f"not in the raw layout: {obj.key}"
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
        arrival = datetime.strptime(match["ts"], "%Y%m%dT%H%M%SZ").date()
        records = list(decode_ndjson_gz(lake.read_bytes(obj.key)))
        file_sizes[obj.key] = len(records)
        raw[f"{match['provider']}/{match['stream']}"].extend((day, arrival, r) for r in records)
    truth = {
        "persons": list(decode_ndjson_gz(lake.read_bytes("truth/acme_corp/persons.ndjson.gz"))),
        "dirt": [
            row for obj in lake.list("truth/acme_corp/dirt/") for row in decode_ndjson_gz(lake.read_bytes(obj.key))
        ],
        "manifest": json.loads(lake.read_bytes("truth/manifest.json")),
        "consent": list(decode_ndjson_gz(lake.read_bytes("truth/acme_corp/consent.ndjson.gz"))),
    }
    return summary, raw, file_sizes, truth


def truth_count(truth, kind, streams=None):
    return sum(1 for row in truth["dirt"] if row["dirt"] == kind and (streams is None or row["stream"] in streams))


def event_time(value) -> datetime:
    """An independent reading of the timestamp formats the sources use."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def distinct(rows, key):
    seen = {}
    for day, arrival, record in rows:
        seen.setdefault(record[key], (day, arrival, record))
    return list(seen.values())


def test_counts_match_the_manifest_and_layout(generated):
    summary, raw, file_sizes, truth = generated
    assert {stream: len(rows) for stream, rows in raw.items()} == truth["manifest"]["records"] == dict(summary.records)
    assert max(file_sizes.values()) <= MAX_RECORDS_PER_FILE
    per_day = Counter(key.rsplit("_", 1)[0] for key in file_sizes)
    assert any(count > 1 for count in per_day.values()), "no stream-day was split into 20k-record files"
    assert len(raw) == 11


def test_duplicate_events(generated):
    _, raw, _, truth = generated
    events = raw["app/events"]
    duplicates = len(events) - len({r["message_id"] for _, _, r in events})
    assert duplicates == truth_count(truth, "duplicate")
    assert abs(duplicates / len(events) - RATES.duplicate_events) <= 0.01


def test_missing_user_ids(generated):
    _, raw, _, truth = generated
    owner = {anon: p["app_user_id"] for p in truth["persons"] for anon in p["anonymous_ids"]}
    kiosk = {
        row["value"] for row in truth["dirt"] if row["dirt"] == "shared_device"
    }  # logged-in users on a shared browser
    tracked = [
        r
        for _, _, r in distinct(raw["app/events"], "message_id")
        if r["type"] == "track" and (r["anonymous_id"] in owner or r["anonymous_id"] in kiosk)
    ]
    missing = [r for r in tracked if r["user_id"] is None]
    assert len(missing) == truth_count(truth, "missing_user_id")
    assert abs(len(missing) / len(tracked) - RATES.missing_user_id) <= 0.01
    assert all(
        r["user_id"] == owner[r["anonymous_id"]]
        for r in tracked
        if r["user_id"] is not None and r["anonymous_id"] in owner
    )


def test_identifiers_shared_by_several_people(generated):
    _, raw, _, truth = generated
    orders = [r for _, _, r in raw["shopify/orders"]]
    store = [r for r in orders if r["email"].startswith("instore@")]
    assert len(store) == truth_count(truth, "store_inbox") and abs(len(store) / len(orders) - RATES.store_inbox) <= 0.01
    assert len({r["customer"]["id"] for r in store}) > 3  # one inbox, many customers
    billing = [r for _, _, r in raw["stripe/customers"] if r["email"].startswith("billing@")]
    assert len(billing) == truth_count(truth, "role_inbox") > 0
    kiosk = {row["value"] for row in truth["dirt"] if row["dirt"] == "shared_device"}
    users = {r["user_id"] for _, _, r in raw["app/events"] if r["anonymous_id"] in kiosk and r["user_id"]}
    assert len(kiosk) == 1 and len(users) > 3  # one browser, many app users


def test_invalid_emails(generated):
    _, raw, _, truth = generated
    streams = {"shopify/customers": "email", "stripe/customers": "email", "salesforce/contacts": "Email"}
    records = [(stream, r[field]) for stream, field in streams.items() for _, _, r in raw[stream]]
    invalid = [email for _, email in records if not EMAIL.match(email.strip())]
    assert len(invalid) == truth_count(truth, "invalid_email")
    assert abs(len(invalid) / len(records) - RATES.invalid_email) <= 0.01


def test_non_positive_amounts(generated):
    _, raw, _, truth = generated
    orders = [float(r["total_price"]) for _, _, r in raw["shopify/orders"]]
    charges = [r["amount"] for _, _, r in raw["stripe/charges"]]
    bad = sum(1 for amount in orders + charges if amount <= 0)
    assert bad == truth_count(truth, "non_positive_amount")
    assert abs(bad / (len(orders) + len(charges)) - RATES.non_positive_amount) <= 0.01


def test_late_arrivals(generated):
    _, raw, _, truth = generated
    timed = {
        "app/events": ("message_id", "timestamp"),
        "shopify/orders": ("id", "created_at"),
        "stripe/charges": ("id", "created"),
    }
    lateness = Counter()
    total = 0
    for stream, (key, field) in timed.items():
        for day, arrival, record in distinct(raw[stream], key):
            total += 1
            assert event_time(record[field]).astimezone(UTC).date() == day  # filed under its event day
            lateness[(arrival - day).days] += 1
    assert set(lateness) <= {0, 1, 2, 3}
    late = total - lateness[0]
    assert late == truth_count(truth, "late")
    assert abs(late / total - RATES.late) <= 0.01


def test_one_person_under_many_ids_and_formats(generated):
    _, raw, _, truth = generated
    persons = truth["persons"]
    systems = ("shopify_customer_id", "stripe_customer_id", "salesforce_contact_id", "app_user_id")
    multi = sum(1 for p in persons if sum(p[s] is not None for s in systems) >= 2)
    assert multi / len(persons) > 0.5

    by_shopify = {p["shopify_customer_id"]: p for p in persons if p["shopify_customer_id"]}
    emails_varied = phones_checked = 0
    phone_shapes = set()
    for _, _, record in raw["shopify/customers"]:
        person = by_shopify[record["id"]]
        if EMAIL.match(record["email"].strip()):
            assert record["email"].strip().lower() == person["email"]
            emails_varied += record["email"] != person["email"]
        if record["phone"]:
            parsed = phonenumbers.parse(record["phone"], person["country"])
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == person["phone_e164"]
            phone_shapes.add(re.sub(r"\d", "9", record["phone"]))
            phones_checked += 1
    assert emails_varied / len(raw["shopify/customers"]) > 0.2
    assert phones_checked > 1000 and len(phone_shapes) >= 8


def test_mixed_timestamp_formats(generated):
    _, raw, _, _ = generated
    shapes = Counter()
    for _, _, record in raw["app/events"]:
        value = record["timestamp"]
        shapes[
            "epoch_ms"
            if isinstance(value, int)
            else "Z"
            if value.endswith("Z")
            else "naive"
            if len(value) == 19
            else "offset"
        ] += 1
    assert len(shapes) == 4 and min(shapes.values()) / sum(shapes.values()) > 0.15


def test_schema_drift_part_way(generated):
    _, raw, _, truth = generated
    drift_day = date.fromisoformat(truth["manifest"]["schema_drift"]["from_day"])
    before = [r for day, _, r in raw["shopify/customers"] if day < drift_day]
    after = [r for day, _, r in raw["shopify/customers"] if day >= drift_day]
    assert before and after
    assert not any(DRIFT_FIELD in r for r in before) and all(DRIFT_FIELD in r for r in after)


def test_consent_truth_is_the_latest_statement_of_the_raw_records(generated):
    """Each person's consent per purpose, read again from the raw records: the latest statement of a
    record with a valid email (the platform dead-letters the others), a denial winning a tie."""
    _, raw, _, truth = generated
    persons = truth["persons"]
    owner = {
        **{("shopify", p["shopify_customer_id"]): p["person_id"] for p in persons},
        **{("salesforce", p["salesforce_contact_id"]): p["person_id"] for p in persons},
        **{("app", p["app_user_id"]): p["person_id"] for p in persons},
        **{("email_sha256", sha256_hex(p["email"])): p["person_id"] for p in persons},
    }
    latest = {}

    def state(source: tuple, purpose: str, granted: bool, at: datetime) -> None:
        key, order = (owner[source], purpose), (at, not granted)
        if key not in latest or order > latest[key]:
            latest[key] = order

    missing = 0
    for _, _, r in raw["shopify/customers"]:
        missing += r["accepts_marketing"] is None
        if EMAIL.match(r["email"].strip()):
            at = event_time(r["updated_at"])
            if r["accepts_marketing"] is not None:
                state(("shopify", r["id"]), "email_marketing", r["accepts_marketing"], at)
            sms = (r.get(DRIFT_FIELD) or {}).get("state", "").lower()
            if sms in ("subscribed", "not_subscribed", "unsubscribed"):
                state(("shopify", r["id"]), "sms_marketing", sms == "subscribed", at)
    for _, _, r in raw["salesforce/contacts"]:
        if EMAIL.match(r["Email"].strip()) and r["HasOptedOutOfEmail"]:
            at = datetime.strptime(r["LastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%f%z")
            state(("salesforce", r["Id"]), "email_marketing", False, at)
    categories = {purpose.replace("_", ""): purpose for purpose in PURPOSES}
    for _, _, r in distinct(raw["app/events"], "message_id"):
        for category, granted in ((r.get("context") or {}).get("consent", {}).get("categoryPreferences", {})).items():
            purpose = categories.get(re.sub("[^a-z]", "", category.lower()))
            if purpose:
                state(("app", r["user_id"]), purpose, granted, event_time(r["timestamp"]))
    for _, _, r in raw["campaigns/results"]:
        if r["event_type"] == "unsubscribed":
            state(("email_sha256", r["email_sha256"]), "email_marketing", False, event_time(r["occurred_at"]))

    expected = {
        (p["person_id"], purpose): (
            "unknown"
            if (p["person_id"], purpose) not in latest
            else "denied"
            if latest[(p["person_id"], purpose)][1]
            else "granted"
        )
        for p in persons
        for purpose in PURPOSES
    }
    assert {(row["person_id"], row["purpose"]): row["status"] for row in truth["consent"]} == expected
    assert len(truth["consent"]) == len(persons) * len(PURPOSES)
    for purpose in PURPOSES:
        shares = Counter(status for (_, p), status in expected.items() if p == purpose)
        assert set(shares) == {"granted", "denied", "unknown"}, purpose
    assert {row["source"] for row in truth["consent"]} == {
        None,
        "shopify_accepts_marketing",
        "shopify_sms_marketing_consent",
        "salesforce_email_opt_out",
        "app_consent",
        "campaign_unsubscribe",
    }
    assert missing == truth_count(truth, "consent_missing") > 0


def _fingerprint(lake: LakeResource) -> dict[str, str]:
    return {obj.key: hashlib.sha256(lake.read_bytes(obj.key)).hexdigest() for obj in lake.list("")}


def test_same_seed_same_bytes(tmp_path):
    config = GeneratorConfig(tenants=("acme_corp", "globex"), days=3, customers=800, seed=5)
    first, second, other = (LakeResource(base_uri=str(tmp_path / name)) for name in ("a", "b", "c"))
    generate(first, config, workers=1, progress=False)
    generate(second, config, workers=2, progress=False)
    generate(other, GeneratorConfig(tenants=config.tenants, days=3, customers=800, seed=6), workers=1, progress=False)
    assert len(_fingerprint(first)) > 40
    assert _fingerprint(first) == _fingerprint(second)
    changed = {k for k, v in _fingerprint(other).items() if _fingerprint(first).get(k) != v}
    assert any(key.startswith("raw/") for key in changed)
