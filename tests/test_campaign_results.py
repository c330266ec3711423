"""Campaign results fed back: the sample platform's results dropped as a JSON-lines file land in
the raw zone through the file-drop path (an unknown outcome is dead-lettered), and dbt's
stg_campaign_results and campaign_performance count them by tenant, segment and day, checked
against the landed records."""

import json
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from cdp_common.dead_letters import SCHEMA_VIOLATION, dlq_prefix
from cdp_ingest.file_drops import process_drops
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.dbt_project import cdp_dbt_project, dbt_cli
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import decode_ndjson_gz
from cdp_resources.warehouse import WarehouseResource
from cdp_resources.warehouse_security import ensure_security
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.population import build_population
from cdp_sampledata.streams import generate_day
from tests.webhook_support import fresh_database

FIRST = date(2026, 4, 1)
TENANT = "acme"
TYPES = ("delivered", "opened", "clicked", "converted", "unsubscribed")


def sample_results() -> list[dict]:
    """Two days of the sample generator's campaign results for one tenant."""
    population = build_population(5, TENANT, 3_000, 2)
    return [
        record
        for day in range(2)
        for ((provider, stream), _), rows in generate_day(population, day, FIRST, 2, DirtRates(), 3, 5).records.items()
        if (provider, stream) == ("campaigns", "results")
        for record in rows
    ]


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> tuple[LakeResource, list[dict], list[dict]]:
    lake = LakeResource(base_uri=str(tmp_path_factory.mktemp("campaigns") / "lake"))
    results = sample_results()
    bounced = {**results[0], "event_id": "not-an-outcome", "event_type": "bounced"}
    dropped = [*results, results[1], bounced]  # the platform re-sent one event; one outcome is not in the schema
    lake.write_bytes(
        f"drops/{TENANT}/campaigns/results/results.jsonl", "\n".join(json.dumps(r) for r in dropped).encode()
    )
    (outcome,) = process_drops(lake, lake, SchemaRegistry())
    assert (outcome.records, outcome.landed, outcome.dead_lettered) == (len(dropped), len(dropped) - 1, 1)
    raw = [
        r for obj in lake.list(f"raw/{TENANT}/campaigns/results/") for r in decode_ndjson_gz(lake.read_bytes(obj.key))
    ]
    letters = [
        r
        for obj in lake.list(dlq_prefix(TENANT, "campaigns", SCHEMA_VIOLATION))
        for r in decode_ndjson_gz(lake.read_bytes(obj.key))
    ]
    return lake, raw, letters


def test_results_land_in_the_raw_zone_and_unknown_outcomes_are_dead_lettered(landed):
    _, raw, letters = landed
    assert len(raw) > 100 and {r["event_type"] for r in raw} == set(TYPES)
    assert [letter["payload"]["event_id"] for letter in letters] == ["not-an-outcome"]


def _expected(raw: list[dict]) -> dict:
    """campaign_performance computed here from the landed records."""
    events = {r["event_id"]: r for r in raw}
    pairs = defaultdict(lambda: defaultdict(set))
    campaigns = defaultdict(set)
    for r in events.values():
        key = (TENANT, r["segment"], datetime.fromisoformat(r["occurred_at"]).date())
        pairs[key][r["event_type"]].add((r["campaign_id"], r["cdp_customer_id"] or r["email_sha256"] or r["event_id"]))
        campaigns[key].add(r["campaign_id"])

    def rate(numerator: int, denominator: int):
        return (
            (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
            if denominator
            else None
        )

    expected = {}
    for key, by_type in pairs.items():
        n = {t: len(by_type[t]) for t in TYPES}
        expected[key] = (
            len(campaigns[key]),
            *n.values(),
            rate(n["opened"], n["delivered"]),
            rate(n["clicked"], n["delivered"]),
            rate(n["clicked"], n["opened"]),
            rate(n["converted"], n["delivered"]),
            rate(n["unsubscribed"], n["delivered"]),
        )
    return expected


def test_campaign_performance_by_segment_and_day(landed, postgres, tmp_path, monkeypatch):
    _, raw, _ = landed
    warehouse = WarehouseResource(url=fresh_database(postgres))
    with warehouse.connect() as conn:
        ensure_security(conn)  # what the warehouse load sets up before dbt's models protect themselves
        conn.execute("""CREATE SCHEMA raw_cdp; CREATE TABLE raw_cdp.campaign_results (
            tenant_id text, event_id text, campaign_id text, destination text, segment text, cdp_customer_id text,
            email_sha256 text, event_type text, occurred_at timestamptz, event_date date, _ingest_ts timestamptz)""")
        with conn.cursor().copy("COPY raw_cdp.campaign_results FROM STDIN") as copy:
            for r in raw:
                copy.write_row(
                    (
                        TENANT,
                        r["event_id"],
                        r["campaign_id"],
                        r["destination"],
                        r["segment"],
                        r["cdp_customer_id"],
                        r["email_sha256"],
                        r["event_type"],
                        r["occurred_at"],
                        r["occurred_at"][:10],
                        "2026-04-03T00:00:00Z",
                    )
                )
    for name, value in warehouse.dbt_env().items():
        monkeypatch.setenv(name, value)
    project = cdp_dbt_project()
    dbt_cli(project).cli(
        ["build", "--select", "stg_campaign_results campaign_performance"], target_path=tmp_path
    ).wait()
    with psycopg.connect(warehouse.dsn()) as conn:
        rows = conn.execute(
            "SELECT tenant_id, segment, day, campaigns, delivered, opened, clicked, converted, unsubscribed, "
            "open_rate, click_rate, click_to_open_rate, conversion_rate, unsubscribe_rate "
            "FROM marts.campaign_performance"
        ).fetchall()
        (staged,) = conn.execute("SELECT count(*) FROM staging.stg_campaign_results").fetchone()
    assert staged == len({r["event_id"] for r in raw}) < len(raw)
    assert {row[:3]: row[3:] for row in rows} == _expected(raw)
    assert len(rows) == len({(r["segment"], r["occurred_at"][:10]) for r in raw}) >= 4
