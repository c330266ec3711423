"""The profile API for real: the `lake_daily` job's serving tables (asset api/serving_tables), keys
made as `cdp api keys` makes them, the app on uvicorn over HTTP as the `cdp_api` role, and the /ui
page in Debian's Chromium. A second tenant holds a copy of the first's profiles (the same emails,
other names), so a key that reads the wrong tenant's rows would show."""

import json
import logging
import secrets
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from cdp_api import keys
from cdp_api.app import create_app
from cdp_api.serving import finish_build, start_build
from cdp_resources.local_ports import free_port
from tests.conftest import TEST_STATE

TENANT, OTHER = "acme_corp", "globex_copy"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _copy_tenant(conn) -> None:
    """The other tenant: every serving row of the first, its names prefixed `Other `."""
    for table in ("identifiers", "timeline", "memberships", "merges", "exclusions"):
        columns = [r[0] for r in conn.execute(f"SELECT * FROM api.{table} LIMIT 0").description]
        picked = ", ".join("%(other)s" if c == "tenant_id" else c for c in columns)
        conn.execute(
            f"INSERT INTO api.{table} SELECT {picked} FROM api.{table} WHERE tenant_id = %(t)s",
            {"other": OTHER, "t": TENANT},
        )
    columns = [r[0] for r in conn.execute("SELECT * FROM api.profiles LIMIT 0").description]
    picked = ", ".join({"tenant_id": "%(other)s", "name": "'Other ' || name"}.get(c, c) for c in columns)
    conn.execute(
        f"INSERT INTO api.profiles SELECT {picked} FROM api.profiles WHERE tenant_id = %(t)s",
        {"other": OTHER, "t": TENANT},
    )


@pytest.fixture(scope="module")
def api(lake_daily_run, postgres):
    """The serving tables of the job's run, keys for both tenants and the API on a free port."""
    assert lake_daily_run["result"].success
    pipeline_url = lake_daily_run["warehouse"].dsn()
    database = conninfo_to_dict(pipeline_url)["dbname"]
    with psycopg.connect(pipeline_url, autocommit=True) as conn:
        _copy_tenant(conn)
    password = secrets.token_urlsafe(16)
    made = {}
    with psycopg.connect(postgres.url(database), autocommit=True) as admin:
        keys.ensure_login_role(admin, password)
        for name, tenant, scopes, rate in (
            ("masked", TENANT, ("profiles",), 1000),
            ("pii", TENANT, ("profiles", "pii"), 1000),
            ("other", OTHER, ("profiles", "pii"), 1000),
            ("slow", TENANT, ("profiles",), 2),
        ):
            made[name] = keys.create_key(admin, tenant, scopes, rate)[1]
        revoked_id, made["revoked"] = keys.create_key(admin, TENANT)
        keys.revoke_key(admin, revoked_id)
    api_url = make_conninfo(postgres.url(database, keys.LOGIN_ROLE), password=password)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(api_url), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield {
            "client": client,
            "keys": made,
            "pipeline": pipeline_url,
            "api_url": api_url,
            "port": port,
            "password": password,
        }
    server.should_exit = True
    thread.join()


def _get(api, key: str, path: str, **params) -> httpx.Response:
    return api["client"].get(path, params=params, headers={"Authorization": f"Bearer {api['keys'][key]}"})


def _rows(api, query: str, params=()) -> list[dict]:
    with psycopg.connect(api["pipeline"], row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def person(api) -> dict:
    """A profile of the first tenant with an email, a phone, a name and a Shopify customer id."""
    (row,) = _rows(
        api,
        "SELECT p.cdp_customer_id, p.email, p.phone, p.name, i.id_value AS shopify_id FROM api.profiles p "
        "JOIN api.identifiers i USING (tenant_id, cdp_customer_id) WHERE p.tenant_id = %s "
        "AND i.id_type = 'shopify_customer_id' AND p.email IS NOT NULL AND p.phone IS NOT NULL AND p.name IS NOT NULL "
        "ORDER BY (SELECT count(*) FROM api.timeline t WHERE t.tenant_id = p.tenant_id "
        "AND t.cdp_customer_id = p.cdp_customer_id) DESC, p.cdp_customer_id LIMIT 1",
        (TENANT,),
    )
    return row


def test_the_job_builds_the_serving_tables_from_the_warehouse(api):
    (counts,) = _rows(
        api,
        "SELECT (SELECT count(*) FROM api.profiles WHERE tenant_id = %(t)s) AS served, "
        "(SELECT count(*) FROM marts.customer_360) AS marts, "
        "(SELECT count(*) FROM api.identifiers WHERE tenant_id = %(t)s) AS identifiers, "
        "(SELECT count(*) FROM raw_cdp.customer_ids) AS identity_map",
        {"t": TENANT},
    )
    assert counts["served"] == counts["marts"] > 0 and counts["identifiers"] == counts["identity_map"]
    indexes = {
        r["indexdef"].split(" USING ")[1]
        for r in _rows(api, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'api'")
    }
    assert "gin (name gin_trgm_ops)" in indexes
    assert not _rows(api, "SELECT 1 FROM pg_namespace WHERE nspname = 'api_build'")


def test_lookup_by_any_identifier_gives_the_golden_record(api, person):
    by_email = _get(api, "pii", f"/v1/{TENANT}/profiles/email:{person['email'].upper()}")
    assert by_email.status_code == 200, by_email.text
    body = by_email.json()
    assert body["cdp_customer_id"] == person["cdp_customer_id"]
    assert body["traits"]["name"] == person["name"] and body["traits"]["email"] == person["email"]
    (served,) = _rows(
        api,
        "SELECT email_marketing_consent, sms_marketing_consent, advertising_consent, accepts_marketing, "
        "preferred_channel, churn_probability FROM marts.customer_360 WHERE tenant_id = %s AND cdp_customer_id = %s",
        (TENANT, person["cdp_customer_id"]),
    )
    assert body["consent"] == {
        "email_marketing": served["email_marketing_consent"],
        "sms_marketing": served["sms_marketing_consent"],
        "advertising": served["advertising_consent"],
        "accepts_marketing": served["accepts_marketing"],
        "preferred_channel": served["preferred_channel"],
    }
    # Two days of sample history are too little for a model (cdp_predictions' minimum history).
    assert served["churn_probability"] is None and body["predictions"] is None
    (as_of,) = _rows(api, "SELECT max(as_of_date) AS day FROM marts.customer_360")
    assert body["as_of"] == as_of["day"].isoformat()
    expected_segments = _rows(
        api,
        "SELECT segment FROM segments.segment_membership WHERE tenant_id = %s AND cdp_customer_id = %s "
        "AND as_of_date = %s ORDER BY segment",
        (TENANT, person["cdp_customer_id"], as_of["day"]),
    )
    assert [s["segment"] for s in body["segments"]] == [s["segment"] for s in expected_segments]
    stored = _rows(
        api,
        "SELECT id_type, id_value FROM raw_cdp.customer_ids WHERE tenant_id = %s AND cdp_customer_id = %s",
        (TENANT, person["cdp_customer_id"]),
    )
    assert sorted((i["type"], i["value"]) for i in body["identifiers"]) == sorted(
        (r["id_type"], r["id_value"]) for r in stored
    )
    for path in (
        f"phone:{person['phone']}",
        f"shopify_customer_id:{person['shopify_id']}",
        f"cdp_customer_id:{person['cdp_customer_id']}",
    ):
        assert _get(api, "pii", f"/v1/{TENANT}/profiles/{path}").json()["cdp_customer_id"] == person["cdp_customer_id"]


def test_a_key_without_the_pii_scope_reads_personal_values_masked_by_the_database(api, person):
    body = _get(api, "masked", f"/v1/{TENANT}/profiles/shopify_customer_id:{person['shopify_id']}").json()
    assert body["cdp_customer_id"] == person["cdp_customer_id"]
    assert body["traits"]["email"] == body["traits"]["name"] == body["traits"]["phone"] == "***"
    values = {i["type"]: i["value"] for i in body["identifiers"]}
    assert values["email"] == "***" and values["shopify_customer_id"] == person["shopify_id"]
    for path in (f"/v1/{TENANT}/profiles/email:{person['email']}", f"/v1/{TENANT}/profiles"):
        refused = _get(api, "masked", path, q=person["email"][:4])
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_a_key_never_reads_another_tenant(api, person):
    """The other tenant holds the same emails: each key finds its own tenant's profile, and the
    database itself returns nothing of the other tenant to a tenant role, whatever the query asks."""
    mine = _get(api, "pii", f"/v1/{TENANT}/profiles/email:{person['email']}").json()
    theirs = _get(api, "other", f"/v1/{OTHER}/profiles/email:{person['email']}").json()
    assert mine["traits"]["name"] == person["name"] and theirs["traits"]["name"] == f"Other {person['name']}"
    for path in (f"/v1/{OTHER}/profiles/email:{person['email']}", f"/v1/{OTHER}/profiles"):
        crossing = _get(api, "pii", path, q="ab")
        assert crossing.status_code == 403 and person["name"] not in crossing.text
    found = _get(api, "pii", f"/v1/{TENANT}/profiles", q=person["email"][:6]).json()["items"]
    assert found and all(not (r["name"] or "").startswith("Other ") for r in found)
    with psycopg.connect(api["api_url"], autocommit=True) as conn:
        # cdp_api itself reads nothing; as the first tenant's PII role, the other tenant's rows do not exist.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM api.profiles").fetchone()
        conn.execute(f'SET ROLE "{keys.tenant_role(TENANT, True)}"')
        for table in ("profiles", "identifiers", "timeline", "memberships", "exclusions"):
            (count,) = conn.execute(f"SELECT count(*) FROM api.{table} WHERE tenant_id = %s", (OTHER,)).fetchone()
            (masked,) = conn.execute(
                f"SELECT count(*) FROM tenant_views.api__{table} WHERE tenant_id = %s", (OTHER,)
            ).fetchone()
            assert count == masked == 0, table


def test_the_timeline_pages_newest_first_with_cursors(api, person):
    expected = _rows(
        api,
        "SELECT kind, item_id FROM api.timeline WHERE tenant_id = %s AND cdp_customer_id = %s "
        "ORDER BY at DESC, kind DESC, item_id DESC",
        (TENANT, person["cdp_customer_id"]),
    )
    assert len(expected) > 3
    seen, cursor, pages = [], None, 0
    while True:
        page = _get(
            api,
            "masked",
            f"/v1/{TENANT}/profiles/shopify_customer_id:{person['shopify_id']}/timeline",
            limit=3,
            **({"cursor": cursor} if cursor else {}),
        ).json()
        seen += [(i["kind"], i["item_id"]) for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [(r["kind"], r["item_id"]) for r in expected] and pages == -(-len(expected) // 3)


def test_a_published_model_s_scores_come_with_the_profile(api, person):
    """Scores as `predictions/customer_scores` publishes them through customer_360 into the serving
    table (here written there directly: the sample is too short for a model) reach the profile."""
    with psycopg.connect(api["pipeline"], autocommit=True) as conn:
        conn.execute(
            "UPDATE api.profiles SET churn_probability = 0.125, probability_alive = 0.875, "
            "expected_purchases_12m = 2.5, predicted_value_12m_usd = 140.20, predicted_as_of = as_of_date "
            "WHERE tenant_id = %s AND cdp_customer_id = %s",
            (TENANT, person["cdp_customer_id"]),
        )
    try:
        body = _get(api, "masked", f"/v1/{TENANT}/profiles/cdp_customer_id:{person['cdp_customer_id']}").json()
        assert body["predictions"] == {
            "churn_probability": 0.125,
            "probability_alive": 0.875,
            "expected_purchases_12m": 2.5,
            "predicted_value_12m_usd": "140.20",  # money as exact decimal text, like the traits
            "as_of": body["as_of"],
        }
        other = _get(api, "other", f"/v1/{OTHER}/profiles/cdp_customer_id:{person['cdp_customer_id']}").json()
        assert other["predictions"] is None
    finally:
        with psycopg.connect(api["pipeline"], autocommit=True) as conn:
            conn.execute(
                "UPDATE api.profiles SET churn_probability = NULL, probability_alive = NULL, "
                "expected_purchases_12m = NULL, predicted_value_12m_usd = NULL, predicted_as_of = NULL "
                "WHERE tenant_id = %s",
                (TENANT,),
            )


def test_segments_now_and_as_of_a_day(api, person):
    now = _get(api, "masked", f"/v1/{TENANT}/profiles/cdp_customer_id:{person['cdp_customer_id']}/segments").json()
    (latest,) = _rows(api, "SELECT max(as_of_date) AS day FROM segments.segment_membership")
    assert now["as_of"] == latest["day"].isoformat()
    before = _get(
        api, "masked", f"/v1/{TENANT}/profiles/cdp_customer_id:{person['cdp_customer_id']}/segments", as_of="2000-01-01"
    ).json()
    assert before["as_of"] is None and before["segments"] == []


def test_search_by_email_phone_prefix_and_name_similarity(api, person):
    def ids(**params):
        response = _get(api, "pii", f"/v1/{TENANT}/profiles", **params)
        assert response.status_code == 200, response.text
        return [r["cdp_customer_id"] for r in response.json()["items"]]

    assert person["cdp_customer_id"] in ids(q=person["email"][:5].upper(), limit=100)
    assert person["cdp_customer_id"] in ids(q=person["phone"][:8], limit=100)
    assert person["cdp_customer_id"] in ids(q=person["name"][:4].lower(), limit=100)  # typed so far
    middle = len(person["name"]) // 2
    misspelt = person["name"][:middle] + ("x" if person["name"][middle] != "x" else "y") + person["name"][middle + 1 :]
    assert person["cdp_customer_id"] in ids(q=misspelt, limit=100)
    assert person["cdp_customer_id"] == ids(q=misspelt, limit=1)[0] or _rows(
        api,
        "SELECT 1 FROM api.profiles WHERE tenant_id = %s AND name = %s AND cdp_customer_id <> %s",
        (TENANT, person["name"], person["cdp_customer_id"]),
    )  # best first, unless a namesake ties
    # Pages of two follow each other without repeats and add up to the whole result.
    whole = ids(q=person["email"][:2], limit=50)
    paged, cursor = [], None
    while len(paged) < len(whole):
        page = _get(
            api,
            "pii",
            f"/v1/{TENANT}/profiles",
            q=person["email"][:2],
            limit=2,
            **({"cursor": cursor} if cursor else {}),
        ).json()
        paged += [r["cdp_customer_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert paged == whole[: len(paged)] and len(paged) == len(whole)


def test_a_segments_members_page_by_page(api):
    (segment,) = _rows(
        api,
        "SELECT segment, as_of_date, count(*) AS members FROM segments.segment_membership WHERE tenant_id = %s "
        "GROUP BY 1, 2 ORDER BY as_of_date DESC, members DESC LIMIT 1",
        (TENANT,),
    )
    expected = [
        r["cdp_customer_id"]
        for r in _rows(
            api,
            "SELECT cdp_customer_id FROM segments.segment_membership WHERE tenant_id = %s AND segment = %s "
            "AND as_of_date = %s ORDER BY cdp_customer_id",
            (TENANT, segment["segment"], segment["as_of_date"]),
        )
    ]
    members, cursor = [], None
    while True:
        page = _get(
            api,
            "masked",
            f"/v1/{TENANT}/segments/{segment['segment']}/members",
            limit=7,
            **({"cursor": cursor} if cursor else {}),
        ).json()
        members += page["members"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert members == expected
    assert _get(api, "masked", f"/v1/{TENANT}/segments/no_such_segment/members").status_code == 404


def test_the_explanation_shows_identifiers_merges_and_exclusions(api, person):
    (who,) = _rows(
        api,
        "SELECT cdp_customer_id, count(*) AS exclusions FROM api.exclusions WHERE tenant_id = %s "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
        (TENANT,),
    )
    body = _get(api, "pii", f"/v1/{TENANT}/profiles/cdp_customer_id:{who['cdp_customer_id']}/explanation").json()
    assert len(body["exclusions"]) == who["exclusions"] and body["identifiers"]
    assert all(e["reason"] and e["kind"] for e in body["exclusions"])
    masked = _get(api, "masked", f"/v1/{TENANT}/profiles/cdp_customer_id:{who['cdp_customer_id']}/explanation").json()
    personal = [e for e in masked["exclusions"] if e["id_type"] in ("email", "phone")]
    assert all(e["value"] == "***" for e in personal)
    # The sample's one run merged nothing (merges need a previous identity map): a later run's merge
    # into the person, as identity resolution records it, shows with its cause.
    with psycopg.connect(api["pipeline"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api.merges VALUES (%s, 'merged', 'an-older-id', %s, %s, now())",
            (TENANT, person["cdp_customer_id"], json.dumps([f"email:{person['email']}"])),
        )
    path = f"/v1/{TENANT}/profiles/cdp_customer_id:{person['cdp_customer_id']}/explanation"
    (merge,) = _get(api, "pii", path).json()["merges"]
    assert (merge["event"], merge["previous_id"], merge["caused_by"]) == (
        "merged",
        "an-older-id",
        [f"email:{person['email']}"],
    )
    assert _get(api, "masked", path).json()["merges"][0]["caused_by"] is None


BAD_REQUESTS = [
    ("pii", f"/v1/{TENANT}/profiles/passport:123", {}, 400),
    ("pii", f"/v1/{TENANT}/profiles/email:", {}, 400),
    ("pii", f"/v1/{TENANT}/profiles/cdp_customer_id:no-such-person", {}, 404),
    ("pii", f"/v1/{TENANT}/profiles/cdp_customer_id:x/timeline", {"cursor": "not a cursor"}, 400),
    ("pii", f"/v1/{TENANT}/profiles/cdp_customer_id:x/timeline", {"cursor": "WyJ4IiwieSIsInoiXQ"}, 400),
    ("pii", f"/v1/{TENANT}/profiles/cdp_customer_id:x/timeline", {"limit": 100000}, 400),
    ("pii", f"/v1/{TENANT}/profiles/cdp_customer_id:x/segments", {"as_of": "yesterday"}, 400),
    ("pii", f"/v1/{TENANT}/profiles", {"q": "a" * 5000}, 400),
    ("pii", f"/v1/{TENANT}/profiles", {"q": "ab\x00cd"}, 400),
    ("pii", f"/v1/{TENANT}/profiles", {"q": "x' OR 1=1 --"}, 200),
    ("pii", f"/v1/{TENANT}/profiles", {"q": "ab", "cursor": "eyJvZmZzZXQiOjF9"}, 400),
    ("pii", "/v1/ACME;DROP/profiles", {"q": "ab"}, 400),
    ("pii", f"/v1/{TENANT}/segments/..%2F..%2Fetc/members", {}, 404),
    ("pii", f"/v1/{TENANT}/profiles/email:{'a' * 400}@example.com", {}, 400),
    ("revoked", f"/v1/{TENANT}/profiles/cdp_customer_id:x", {}, 401),
]


@pytest.mark.parametrize("key, path, params, status", BAD_REQUESTS)
def test_bad_input_is_a_4xx_json_error_that_repeats_nothing(api, key, path, params, status):
    response = _get(api, key, path, **params)
    assert response.status_code == status, response.text
    body = response.json()
    if status >= 400:
        assert body["error"] and "detail" in body
        for value in params.values():
            assert str(value)[:30] not in response.text or len(str(value)) < 4


def test_keys_missing_or_forged_are_refused(api):
    client = api["client"]
    assert client.get(f"/v1/{TENANT}/profiles/cdp_customer_id:x").status_code == 401
    forged = api["keys"]["pii"][:-4] + "AAAA"
    assert client.get(f"/v1/{TENANT}/profiles/cdp_customer_id:x", headers={"X-API-Key": forged}).status_code == 401


def test_the_rate_limit_answers_429_with_retry_after(api, person):
    statuses = [
        _get(api, "slow", f"/v1/{TENANT}/profiles/cdp_customer_id:{person['cdp_customer_id']}") for _ in range(5)
    ]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and all(1 <= int(r.headers["Retry-After"]) <= 2 for r in limited)
    assert limited[0].json()["error"] == "rate_limited"


def test_every_request_is_logged_with_key_route_and_status_and_no_personal_value(api, person, caplog):
    caplog.set_level(logging.INFO, logger="cdp_api.requests")
    _get(api, "pii", f"/v1/{TENANT}/profiles/email:{person['email']}")
    _get(api, "pii", f"/v1/{TENANT}/profiles", q=person["name"])
    _get(api, "pii", f"/v1/{TENANT}/profiles/passport:{person['phone']}")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cdp_api.requests"]
    key_id = keys.parse_key(api["keys"]["pii"])[0]
    assert [(line["key_id"], line["route"], line["status"]) for line in lines] == [
        (key_id, "/v1/{tenant}/profiles/{identifier}", 200),
        (key_id, "/v1/{tenant}/profiles", 200),
        (key_id, "/v1/{tenant}/profiles/{identifier}", 400),
    ]
    text = caplog.text.lower()
    for value in (person["email"], person["name"], person["phone"]):
        assert value.lower() not in text


def test_openapi_docs_list_the_routes(api):
    assert api["client"].get("/docs").status_code == 200
    paths = api["client"].get("/openapi.json").json()["paths"]
    assert {
        "/v1/{tenant}/profiles/{identifier}",
        "/v1/{tenant}/profiles",
        "/v1/{tenant}/segments/{segment}/members",
    } <= set(paths)


def test_the_customer_360_page_in_chromium(api, person):
    from playwright.sync_api import sync_playwright

    screenshot = TEST_STATE / "artifacts" / "api_ui.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{api['port']}/ui")
            page.fill("#tenant", TENANT)
            page.fill("#key", api["keys"]["pii"])
            page.fill("#q", person["email"])
            page.click("#search")
            page.locator(f'#results li[data-id="{person["cdp_customer_id"]}"]').click()
            page.wait_for_selector("#timeline tr")
            assert page.text_content("#card-title") == person["name"]
            assert person["email"] in page.text_content("#identifiers")
            assert page.locator("#timeline tr").count() >= 1
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000


def test_a_rebuild_swaps_in_while_requests_run(api, person):
    """Lookups during a rebuild of the serving tables all succeed: the swap is one transaction."""
    statuses, stop = [], threading.Event()

    def lookups():
        while not stop.is_set():
            statuses.append(_get(api, "pii", f"/v1/{TENANT}/profiles/email:{person['email']}").status_code)

    reader = threading.Thread(target=lookups)
    reader.start()
    try:
        with psycopg.connect(api["pipeline"], autocommit=True) as conn:
            start_build(conn)
            built = finish_build(conn)
    finally:
        stop.set()
        reader.join()
    assert built.rows["profiles"] > 0 and date.fromisoformat(built.as_of_date)
    assert statuses and set(statuses) == {200}
    assert (
        _get(api, "pii", f"/v1/{TENANT}/profiles/email:{person['email']}").json()["cdp_customer_id"]
        == person["cdp_customer_id"]
    )


def test_cdp_api_keys_create_list_and_revoke(api, postgres, tmp_path):
    """The key commands as a user runs them; the key they print works until it is revoked."""
    cdp = str(Path(sys.executable).parent / "cdp")
    database = conninfo_to_dict(api["pipeline"])["dbname"]
    # The password the running API logs in with (a command without it would set a new one).
    env = {
        "CDP_STATE_DIR": str(tmp_path),
        "CDP_API_DB_PASSWORD": api["password"],
        "PATH": str(Path(sys.executable).parent),
    }
    run = lambda *args: subprocess.run(  # noqa: E731
        [cdp, "api", "keys", *args, "--url", postgres.url(database)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    created = run("create", TENANT, "--scopes", "profiles", "--rate", "50")
    assert created.returncode == 0, created.stderr
    key = created.stdout.split("key (shown once): ")[1].strip()
    key_id = keys.parse_key(key)[0]
    assert not (tmp_path / "api").exists()  # a given password is not written down
    assert api["client"].get(f"/v1/{TENANT}/segments/x/members", headers={"X-API-Key": key}).status_code == 404
    assert run("revoke", key_id).returncode == 0
    listed = run("list").stdout
    (line,) = [fields for fields in (row.split("\t") for row in listed.splitlines()) if fields[0] == key_id]
    assert line[1:4] == [TENANT, "profiles", "50/s"] and line[5].startswith("revoked") and key not in listed
    refused = run("create", TENANT, "--scopes", "admin")
    assert refused.returncode == 1 and refused.stderr.startswith("cdp: scopes must be")
