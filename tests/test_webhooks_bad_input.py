"""Bad input over real HTTP: malformed JSON, huge bodies, wrong encodings, random bytes, garbage on
the socket. The receiver stays up; nothing invalid lands outside the dead-letter zone, and nothing
unauthentic lands anywhere."""

import json
import random
import socket

import pytest
import requests

from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.webhooks.batcher import Batcher
from cdp_resources.lake import LakeResource
from tests.webhook_support import (
    Service,
    app,
    app_event,
    dead_letters,
    fresh_database,
    post,
    queued_rows,
    raw_records,
    secrets_file,
    shopify,
    shopify_order,
    stripe,
)


@pytest.fixture(scope="module")
def receiver(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("webhooks_bad_input")
    url = fresh_database(postgres)
    service = Service(
        {
            "CDP_POSTGRES_URL": url,
            "CDP_WEBHOOK_SECRETS_FILE": str(secrets_file(root)),
            "CDP_WEBHOOK_RATE": "100000",
            "CDP_WEBHOOK_BURST": "100000",
            "CDP_WEBHOOK_MAX_BODY_BYTES": "65536",
        },
        root / "receiver.log",
    ).start()
    yield service, url, LakeResource(base_uri=str(root / "lake"))
    service.stop()


def _alive(service) -> None:
    assert requests.get(f"{service.url}/health", timeout=5).json() == {"status": "ok"}


def test_bad_input_never_lands_outside_the_dead_letter_zone(receiver):
    service, url, lake = receiver
    rng = random.Random(7)
    utf8_event = json.dumps(app_event("enc-1") | {"properties": {"city": "Zürich"}}, ensure_ascii=False)
    signed_garbage = {  # authentic but unusable: acknowledged and dead-lettered
        "truncated": b'{"message_id": "t1", "type": "tr',
        "trailing garbage": json.dumps(app_event("g1")).encode() + b"}}",
        "NaN": b'{"message_id": "n1", "type": "track", "timestamp": NaN}',
        "empty": b"",
        "deep nesting": b"[" * 5000 + b"]" * 5000,
        "utf-16": utf8_event.encode("utf-16"),
        "latin-1": utf8_event.encode("latin-1"),
        "random bytes": bytes(rng.randrange(256) for _ in range(3000)),
        "a list": b"[1, 2, 3]",
        "null": b"null",
        "NUL characters": json.dumps({"message_id": "x\u0000y", "type": 5, "timestamp": "\u0000"}).encode(),
        "wrong types": json.dumps({"message_id": 7, "type": "track", "timestamp": {"at": "now"}}).encode(),
    }
    dead_lettered = 0
    for name, body in signed_garbage.items():
        response = post(service.url, "acme", "app", app("acme", body))
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == "dead_lettered", name
        dead_lettered += 1
        _alive(service)
    stripe_junk = post(
        service.url, "acme", "stripe", stripe("acme", {"id": "evt_j", "type": "charge.succeeded", "data": 3})
    )
    shopify_junk = post(service.url, "acme", "shopify", shopify("acme", "orders/create", b"\xff\xfe{", "sj-1"))
    assert [stripe_junk.json()["status"], shopify_junk.json()["status"]] == ["dead_lettered"] * 2
    dead_lettered += 2

    refused = [  # unauthentic or over a limit: refused with a JSON error, nothing stored
        (
            401,
            post(
                service.url,
                "acme",
                "app",
                (bytes(rng.randrange(256) for _ in range(500)), {"Content-Type": "application/json"}),
            ),
        ),
        (
            401,
            post(
                service.url,
                "acme",
                "app",
                (
                    b"{}",
                    {
                        "Content-Type": "application/json",
                        "X-CDP-Signature": bytes(rng.randrange(128, 256) for _ in range(40)),
                    },
                ),
            ),
        ),
        (
            401,
            post(
                service.url,
                "acme",
                "stripe",
                (b"{}", {"Content-Type": "application/json", "Stripe-Signature": "t=99999999999999999999999,v1=zz"}),
            ),
        ),
        (413, post(service.url, "acme", "app", app("acme", {"message_id": "big", "pad": "x" * 70_000}))),
        (
            413,
            requests.post(
                f"{service.url}/webhooks/acme/app",
                headers={"Content-Type": "application/json"},
                data=(b"x" * 8192 for _ in range(20)),
            ),
        ),  # chunked, no Content-Length
        (
            415,
            post(
                service.url,
                "acme",
                "app",
                (app("acme", app_event("e"))[0], {"Content-Type": "application/json; charset=utf-16"}),
            ),
        ),
        (415, post(service.url, "acme", "app", (b"<xml/>", {"Content-Type": "application/xml"}))),
    ]
    for status, response in refused:
        assert response.status_code == status, response.text
        assert response.json()["error"]
    # Far over the limit: refused from its Content-Length, the rest of the upload read and dropped.
    huge = requests.post(
        f"{service.url}/webhooks/acme/app",
        data=b"{" * 20_000_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert huge.status_code == 413 and huge.json()["error"] == "body_too_large"
    for junk in (
        bytes(rng.randrange(256) for _ in range(4096)),
        b"POST /webhooks/acme/app HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: " + b"h" * 100_000 + b"\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw:
            raw.sendall(junk)
            raw.shutdown(socket.SHUT_WR)
            raw.recv(65536)
    _alive(service)

    valid = [post(service.url, "acme", "app", app("acme", app_event(f"ok-{n}"))) for n in range(3)]
    valid.append(post(service.url, "acme", "shopify", shopify("acme", "orders/create", shopify_order(9), "ok-s")))
    assert [v.json()["status"] for v in valid] == ["queued"] * 4

    Batcher(url, lake, max_age_seconds=0).step()
    assert queued_rows(url, "acme") == 0
    registry = SchemaRegistry()
    landed = {provider: raw_records(lake, "acme", provider) for provider in ("app", "shopify", "stripe")}
    assert sorted(r["message_id"] for r in landed["app"]) == ["ok-0", "ok-1", "ok-2"]
    assert [r["id"] for r in landed["shopify"]] == [9] and landed["stripe"] == []
    for provider, stream in (("app", "events"), ("shopify", "orders")):
        assert all(registry.latest(provider, stream).errors(r) == [] for r in landed[provider])
    letters = dead_letters(lake, "acme")
    assert len(letters) == dead_lettered
    assert {letter["rule"] for letter in letters} == {"malformed_json", "schema_violation"}
