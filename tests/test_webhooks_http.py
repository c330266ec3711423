"""The webhook receiver over real HTTP (uvicorn in a subprocess on 127.0.0.1) with a real
PostgreSQL queue, and the batcher flushing into a local lake."""

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from cdp_ingest.webhooks.batcher import Batcher
from cdp_resources.lake import LakeResource
from tests.webhook_support import (
    SECRETS,
    Service,
    app,
    app_event,
    dead_letters,
    fresh_database,
    post,
    queued_rows,
    raw_files,
    raw_records,
    secrets_file,
    shopify,
    shopify_customer,
    shopify_order,
    stripe,
    stripe_charge_event,
)


@pytest.fixture(scope="module")
def receiver(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("webhooks_http")
    url = fresh_database(postgres)
    service = Service(
        {
            "CDP_POSTGRES_URL": url,
            "CDP_WEBHOOK_SECRETS_FILE": str(secrets_file(root)),
            "CDP_WEBHOOK_RATE": "20",
            "CDP_WEBHOOK_BURST": "20",
            "CDP_WEBHOOK_MAX_BODY_BYTES": "65536",
        },
        root / "receiver.log",
    ).start()
    yield service, url, LakeResource(base_uri=str(root / "lake"))
    service.stop()


def flush_now(url, lake, **settings) -> Batcher:
    batcher = Batcher(url, lake, **({"max_age_seconds": 0} | settings))
    batcher.step()
    return batcher


def test_each_scheme_accepted_and_duplicates_dropped(receiver):
    service, url, lake = receiver
    sent = [
        ("shopify", shopify("acme", "orders/create", shopify_order(1001), "evt-s1")),
        ("shopify", shopify("acme", "customers/update", shopify_customer(77), "evt-s2")),
        ("stripe", stripe("acme", stripe_charge_event("evt_1", "ch_1"))),
        ("app", app("acme", app_event("m-1"))),
    ]
    for provider, signed in sent:
        response = post(service.url, "acme", provider, signed)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
    # Provider retries: the same event again (Stripe re-signs with a new time; Shopify falls back to the webhook id).
    retries = [
        ("stripe", stripe("acme", stripe_charge_event("evt_1", "ch_1"), timestamp=int(time.time()) - 5)),
        ("app", app("acme", app_event("m-1"))),
    ]
    body, headers = shopify("acme", "orders/create", shopify_order(1001), None)
    retries.append(("shopify", (body, headers | {"X-Shopify-Webhook-Id": "evt-s1"})))
    for provider, signed in retries:
        assert post(service.url, "acme", provider, signed).json()["status"] == "duplicate"
    # Secret rotation: Stripe may send several v1 signatures, one of them valid.
    body, headers = stripe("acme", stripe_charge_event("evt_2", "ch_2"))
    headers["Stripe-Signature"] = headers["Stripe-Signature"].replace(",v1=", ",v1=" + "0" * 64 + ",v1=")
    assert post(service.url, "acme", "stripe", (body, headers)).json()["status"] == "queued"

    flush_now(url, lake)
    assert queued_rows(url, "acme") == 0
    assert sorted(r["id"] for r in raw_records(lake, "acme", "shopify")) == [77, 1001]
    assert sorted(r["id"] for r in raw_records(lake, "acme", "stripe")) == ["ch_1", "ch_2"]
    assert [r["message_id"] for r in raw_records(lake, "acme", "app")] == ["m-1"]
    keys = sorted(raw_files(lake, "acme", "shopify"))
    assert keys[0].startswith("raw/acme/shopify/customers/year=2026/month=01/day=05/customers_")
    assert keys[1].startswith("raw/acme/shopify/orders/year=2026/month=01/day=05/orders_")  # 10:00-05:00 = 15:00 UTC


def _unauthentic_cases():
    old_t = int(time.time()) - 301
    # A minute past the 300 s window: now + 301 (whole seconds) fell inside it when the request
    # reached the receiver a second later, and the receiver stored it.
    future_t = int(time.time()) + 360
    body, headers = shopify("globex", "orders/create", shopify_order(1), "e1")
    tampered = body.replace(b"19.90", b"0.01")
    s_body, s_headers = stripe("globex", stripe_charge_event("evt_x", "ch_x"))
    return {
        "shopify tampered body": ("shopify", (tampered, headers), "bad_signature"),
        "shopify wrong secret": (
            "shopify",
            shopify("globex", "orders/create", shopify_order(1), "e1", secret="nope"),
            "bad_signature",
        ),
        "shopify missing signature": (
            "shopify",
            (body, {k: v for k, v in headers.items() if "Hmac" not in k}),
            "missing_signature",
        ),
        "stripe tampered body": ("stripe", (s_body.replace(b"1990", b"1"), s_headers), "bad_signature"),
        "stripe wrong secret": (
            "stripe",
            stripe("globex", stripe_charge_event("e", "c"), secret="whsec_other"),
            "bad_signature",
        ),
        "stripe old timestamp": (
            "stripe",
            stripe("globex", stripe_charge_event("e", "c"), timestamp=old_t),
            "stale_timestamp",
        ),
        "stripe future timestamp": (
            "stripe",
            stripe("globex", stripe_charge_event("e", "c"), timestamp=future_t),
            "stale_timestamp",
        ),
        "stripe missing header": ("stripe", (s_body, {"Content-Type": "application/json"}), "missing_signature"),
        "stripe header without t": (
            "stripe",
            (s_body, s_headers | {"Stripe-Signature": s_headers["Stripe-Signature"].split(",")[1]}),
            "malformed_signature",
        ),
        "stripe timestamp swapped": (
            "stripe",
            (
                s_body,
                s_headers
                | {"Stripe-Signature": f"t={int(time.time()) - 1}," + s_headers["Stripe-Signature"].split(",")[1]},
            ),
            "bad_signature",
        ),
        "app wrong secret": ("app", app("globex", app_event("m"), secret="app_acme_test"), "bad_signature"),
        "app old timestamp": ("app", app("globex", app_event("m"), timestamp=old_t), "stale_timestamp"),
    }


@pytest.mark.parametrize("case", list(_unauthentic_cases()))
def test_unauthentic_requests_get_401_and_are_not_stored(receiver, case):
    service, url, _ = receiver
    provider, signed, reason = _unauthentic_cases()[case]
    response = post(service.url, "globex", provider, signed)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert SECRETS["globex"][provider] not in response.text
    assert queued_rows(url, "globex") == 0


def test_shopify_retries_hours_later_are_accepted_and_replays_stored_once(receiver):
    """Shopify retries a failed delivery for hours with its original trigger time, and signs only
    the body: a late retry or a delivery without X-Shopify-Triggered-At is accepted, and the same
    body under another (unsigned) event id is a duplicate, as is the same event id again."""
    service, url, lake = receiver
    hours_ago = datetime.now(UTC) - timedelta(hours=3, minutes=50)
    body, headers = shopify("umbrella", "orders/create", shopify_order(2001), "evt-u1", triggered_at=hours_ago)
    assert post(service.url, "umbrella", "shopify", (body, headers)).json()["status"] == "queued"
    no_time = shopify("umbrella", "orders/create", shopify_order(2002), "evt-u2")
    del no_time[1]["X-Shopify-Triggered-At"]
    answer = post(service.url, "umbrella", "shopify", no_time)
    assert answer.status_code == 200 and answer.json()["status"] == "queued", answer.text

    replayed = (body, headers | {"X-Shopify-Event-Id": "evt-forged", "X-Shopify-Triggered-At": "2030-01-01T00:00:00Z"})
    assert post(service.url, "umbrella", "shopify", replayed).json()["status"] == "duplicate"
    other_body = shopify("umbrella", "orders/create", {**shopify_order(2001), "note": "api 2026-04"}, "evt-u1")
    assert post(service.url, "umbrella", "shopify", other_body).json()["status"] == "duplicate"

    flush_now(url, lake)
    assert sorted(r["id"] for r in raw_records(lake, "umbrella", "shopify")) == [2001, 2002]
    assert dead_letters(lake, "umbrella") == []


def test_invalid_but_authentic_payloads_are_dead_lettered(receiver):
    service, url, lake = receiver
    no_amount = stripe_charge_event("evt_bad", "ch_bad")
    del no_amount["data"]["object"]["amount"]
    answers = [
        post(service.url, "initech", "stripe", stripe("initech", no_amount)),
        post(service.url, "initech", "shopify", shopify("initech", "app/uninstalled", {"id": 1}, "evt-u")),
        post(
            service.url, "initech", "shopify", shopify("initech", "orders/create", b'{"id": 5, "created_at": ', "evt-m")
        ),
        post(service.url, "initech", "app", app("initech", {"type": "track"})),
    ]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["status"] for a in answers] == ["dead_lettered"] * 4
    assert "amount" in answers[0].json()["reason"]
    flush_now(url, lake)
    assert raw_records(lake, "initech", "stripe") == raw_records(lake, "initech", "shopify") == []
    letters = {letter["rule"]: letter for letter in dead_letters(lake, "initech")}
    assert set(letters) == {"schema_violation", "unknown_stream", "malformed_json"}
    assert letters["malformed_json"]["payload"] == '{"id": 5, "created_at": '
    assert letters["unknown_stream"]["reason"] == "no stream for Shopify topic 'app/uninstalled'"
    assert all(letter["source"] == "webhook" for letter in letters.values())


def test_protection_answers(receiver):
    service, url, _ = receiver
    body, headers = app("flood", app_event("p-1"))
    cases = {
        404: [
            post(service.url, "nobody", "app", (body, headers)),
            post(service.url, "flood", "shopify", (body, headers)),
            post(service.url, "flood", "mailchimp", (body, headers)),
            requests.post(f"{service.url}/elsewhere", data=body, headers=headers),
        ],
        415: [
            post(service.url, "flood", "app", (body, headers | {"Content-Type": "text/plain"})),
            post(service.url, "flood", "app", (body, headers | {"Content-Type": "application/json; charset=latin-1"})),
        ],
        413: [post(service.url, "flood", "app", app("flood", {"message_id": "big", "x": "a" * 70_000}))],
    }
    for status, responses in cases.items():
        for response in responses:
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]
    answers = [post(service.url, "flood", "app", app("flood", app_event(f"r-{i}"))) for i in range(40)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(int(a.headers["Retry-After"]) >= 1 for a in limited)
    assert limited[0].json()["error"] == "rate_limited"
    assert post(service.url, "acme", "app", app("acme", app_event("other-tenant"))).status_code == 200  # per tenant


def test_flush_by_size_then_by_time(receiver):
    service, url, lake = receiver
    for order in range(1, 8):
        assert (
            post(
                service.url,
                "globex",
                "shopify",
                shopify("globex", "orders/paid", shopify_order(order), f"size-{order}"),
            ).status_code
            == 200
        )
    by_size = Batcher(url, lake, max_records=5, max_age_seconds=3600)
    by_size.step()
    files = raw_files(lake, "globex", "shopify")
    assert [len(records) for records in files.values()] == [5]
    assert queued_rows(url, "globex") == 2
    by_time = Batcher(url, lake, max_records=5, max_age_seconds=1.0)
    by_time.step()
    assert queued_rows(url, "globex") == 2  # younger than a second
    time.sleep(1.0)
    by_time.step()
    assert queued_rows(url, "globex") == 0
    assert sorted(len(records) for records in raw_files(lake, "globex", "shopify").values()) == [2, 5]
    assert sorted(r["id"] for r in raw_records(lake, "globex", "shopify")) == list(range(1, 8))


def test_a_flush_repeated_after_a_crash_lands_once(receiver):
    service, url, lake = receiver
    for n in range(3):
        post(
            service.url,
            "acme",
            "shopify",
            shopify(
                "acme",
                "products/update",
                {"id": 500 + n, "title": f"P{n}", "updated_at": "2026-01-06T00:00:00Z"},
                f"crash-{n}",
            ),
        )
    crashed = Batcher(url, lake, max_age_seconds=0)
    [batch] = crashed.claim_due()
    written = crashed.publish(batch)  # the files are written; the rows are not deleted: then the process dies
    crashed.conn.close()
    assert queued_rows(url, "acme") == 3
    flush_now(url, lake)
    assert queued_rows(url, "acme") == 0
    products = {k: v for k, v in raw_files(lake, "acme", "shopify").items() if "/products/" in k}
    assert list(products) == written
    assert sorted(r["id"] for r in raw_records(lake, "acme", "shopify") if "title" in r) == [500, 501, 502]


def test_health_and_metrics(receiver):
    service, url, _ = receiver
    post(service.url, "acme", "app", app("acme", app_event("metrics-1")))
    post(service.url, "acme", "app", app("acme", app_event("metrics-1")))
    post(service.url, "acme", "app", app("acme", app_event("metrics-2"), secret="wrong"))
    assert requests.get(f"{service.url}/health").json() == {"status": "ok"}
    text = requests.get(f"{service.url}/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert int(lines['cdp_webhooks_duplicates_total{tenant="acme",provider="app"}']) >= 1
    assert int(lines['cdp_webhooks_rejected_total{reason="bad_signature"}']) >= 1
    assert int(lines['cdp_webhooks_accepted_total{tenant="acme",provider="app"}']) >= 1
    assert int(lines["cdp_webhooks_request_seconds_count"]) >= 3
    assert "cdp_webhooks_queue_depth" in lines
    log = service.log.read_text()
    assert all(secret not in text + log for tenant in SECRETS.values() for secret in tenant.values())


def test_secrets_from_the_environment_win_and_never_show(tmp_path):
    from cdp_ingest.webhooks.config import Secrets

    secrets = Secrets.load(
        {
            "CDP_WEBHOOK_SECRETS_FILE": str(secrets_file(tmp_path)),
            "CDP_WEBHOOK_SECRET__ACME__STRIPE": "whsec_rotated",
            "CDP_WEBHOOK_SECRET__NEW_CO__APP": "s3",
        }
    )
    assert secrets.get("acme", "stripe") == b"whsec_rotated"
    assert secrets.get("new_co", "app") == b"s3" and secrets.get("acme", "app") == b"app_acme_test"
    assert secrets.get("new_co", "shopify") is None
    assert "whsec_rotated" not in repr(secrets) and "app_acme_test" not in repr(secrets)


def test_event_ids_are_forgotten_after_the_dedup_window(receiver):
    import psycopg

    service, url, lake = receiver
    assert post(service.url, "initech", "app", app("initech", app_event("old-1"))).json()["status"] == "queued"
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE cdp_webhooks.seen SET received_at = now() - interval '73 hours' WHERE event_id = 'old-1'")
    assert Batcher(url, lake, dedup_hours=72).prune_seen() == 1
    assert post(service.url, "initech", "app", app("initech", app_event("old-1"))).json()["status"] == "queued"


def test_cdp_command_has_the_webhook_commands():
    from cdp_cli.main import parser

    serve = parser().parse_args(["webhooks", "serve", "--port", "9999"])
    batch = parser().parse_args(["webhooks", "batch", "--poll", "0.5"])
    assert (serve.port, serve.handler.__name__, batch.poll, batch.handler.__name__) == (9999, "_serve", 0.5, "_batch")
