"""dbt on the whole `lake_daily` job's sample (a copy of its warehouse): the project builds with
every test passing (as Dagster asset checks), marts agree with the lake and the generator's truth,
every buyer has one RFM segment, segment membership collects every segment model, and an
analyst's new segment model shows up with no other change."""

import gzip
import json
import os
import shutil
from datetime import timedelta

import pytest
from dagster import AssetKey

from cdp_assets.dbt import (
    MEMBERSHIP,
    build_dbt_definitions,
    dbt_vars,
    publish_membership,
    segment_models,
)
from cdp_resources.dbt_project import cdp_dbt_project, dbt_cli, prepare
from cdp_resources.raw_zone import decode_ndjson_gz
from cdp_resources.settings import PROJECT_DIR
from cdp_resources.warehouse import WarehouseResource
from partitions import daily_partitions
from tests.conftest import LAKE_DAILY_CONFIG, copy_database, run_assets
from tests.test_warehouse import rows

FIRST, LAST = LAKE_DAILY_CONFIG.start, LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)


def test_dbt_vars_are_the_partition_window_and_the_late_days(monkeypatch):
    window = daily_partitions.time_window_for_partition_key("2026-01-05")
    monkeypatch.delenv("CDP_LATE_DAYS", raising=False)
    assert dbt_vars(window) == {
        "min_date": "2026-01-05",
        "max_date": "2026-01-05",
        "as_of_date": "2026-01-05",
        "late_days": 3,
    }
    monkeypatch.setenv("CDP_LATE_DAYS", "6")
    assert dbt_vars(window)["late_days"] == 6


def test_layers_read_only_the_layers_below_and_every_loaded_table_is_used_or_explained():
    """staging reads sources, intermediate reads staging, marts read staging, intermediate and
    marts, segments read marts; a loaded table no model reads says why in its description."""
    manifest = json.loads(cdp_dbt_project().manifest_path.read_text())
    readable = {
        "staging": {"source"},
        "intermediate": {"staging"},
        "marts": {"staging", "intermediate", "marts"},
        "segments": {"marts"},
    }

    def layer(unique_id: str) -> str:
        node = manifest["sources" if unique_id.startswith("source.") else "nodes"][unique_id]
        return "source" if node["resource_type"] == "source" else node["fqn"][1]

    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    upward = {
        (model["name"], parent)
        for model in models
        for parent in model["depends_on"]["nodes"]
        if layer(parent) not in readable[model["fqn"][1]]
    }
    assert upward == set()
    read = {parent for model in models for parent in model["depends_on"]["nodes"]}
    unexplained = [
        source["name"]
        for unique_id, source in manifest["sources"].items()
        if unique_id not in read and "No model reads this table" not in source["description"]
    ]
    assert unexplained == []
    dead_ends = [m["name"] for m in models if m["fqn"][1] in ("staging", "intermediate") and m["unique_id"] not in read]
    assert dead_ends == []


@pytest.fixture(scope="module")
def warehouse(lake_daily_run, postgres) -> WarehouseResource:
    """A copy of the warehouse the whole `lake_daily` job built (its dbt models with every dbt test
    as an asset check), for these tests to change."""
    return WarehouseResource(url=copy_database(postgres, lake_daily_run["warehouse"].dsn(), "dbt_tests"))


@pytest.fixture(scope="module")
def built(lake_daily_run, warehouse):
    assert lake_daily_run["result"].success
    return lake_daily_run["lake"], lake_daily_run["result"]


def test_every_model_builds_and_every_test_passes(built):
    _, result = built
    checks = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(checks) > 40
    assert [c.check_name for c in checks if not c.passed] == []
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {
        AssetKey(["marts", name])
        for name in (
            "customer_360",
            "product_perf_daily",
            "revenue_by_geography",
            "revenue_by_industry",
            "cohort_retention",
        )
    } <= materialized


def test_marts_agree_with_the_lake(spark, built, warehouse):
    lake, _ = built
    orders = (
        spark.read.format("delta").load(lake.spark_path("curated/orders")).dropDuplicates(["tenant_id", "order_id"])
    )
    expected = orders.agg({"total_usd": "sum", "*": "count"}).first()
    assert rows(warehouse, "SELECT count(*), sum(total_usd) FROM marts.fct_orders") == [
        (expected["count(1)"], expected["sum(total_usd)"])
    ]
    assert rows(warehouse, "SELECT sum(revenue_usd) FROM marts.revenue_by_geography") == [(expected["sum(total_usd)"],)]
    assert rows(warehouse, "SELECT sum(revenue_usd) FROM marts.revenue_by_industry") == [(expected["sum(total_usd)"],)]
    profiles = spark.read.format("delta").load(lake.spark_path("profiles/customer_profiles")).count()
    assert rows(warehouse, "SELECT count(*) FROM marts.customer_360") == [(profiles,)]
    (buyers,) = rows(warehouse, "SELECT count(*) FROM marts.customer_360 WHERE orders > 0")[0]
    assert rows(warehouse, "SELECT count(*), count(DISTINCT cdp_customer_id) FROM segments.segment_rfm") == [
        (buyers, buyers)
    ]
    assert rows(
        warehouse, "SELECT sum(cohort_size) FROM marts.cohort_retention WHERE months_since_first_order = 0"
    ) == [(buyers,)]


def test_customer_360_carries_the_truth(built, warehouse):
    """Each truth person's Shopify customer id leads to a customer_360 row with their email and country."""
    lake, _ = built
    people = [
        json.loads(line)
        for line in gzip.decompress(
            lake.read_bytes(f"truth/{LAKE_DAILY_CONFIG.tenants[0]}/persons.ndjson.gz")
        ).splitlines()
    ]
    found = dict(
        ((str(shopify_id), (email, country)))
        for shopify_id, email, country in rows(
            warehouse,
            "SELECT i.id_value, c.email, c.country FROM staging.stg_customer_ids i JOIN marts.customer_360 c "
            "USING (tenant_id, cdp_customer_id) WHERE i.id_type = 'shopify_customer_id'",
        )
    )
    checked = [p for p in people if p["shopify_customer_id"] and str(p["shopify_customer_id"]) in found]
    assert len(checked) > 300
    agree = sum(found[str(p["shopify_customer_id"])] == (p["email"], p["country"]) for p in checked)
    assert agree / len(checked) >= 0.97


def test_campaign_performance_counts_the_fed_back_results(built, warehouse):
    """The sample's campaign results, from the raw zone through curated, the warehouse and dbt, by segment and day."""
    lake, _ = built
    events = {
        (tenant, r["event_id"]): r
        for tenant in LAKE_DAILY_CONFIG.tenants
        for obj in lake.list(f"raw/{tenant}/campaigns/results/")
        for r in decode_ndjson_gz(lake.read_bytes(obj.key))
    }
    expected = {}
    for (tenant, _), r in events.items():
        pairs = expected.setdefault((tenant, r["segment"], r["occurred_at"][:10], r["event_type"]), set())
        pairs.add((r["campaign_id"], r["email_sha256"]))
    counted = {}
    for tenant, segment, day, *counts in rows(
        warehouse,
        "SELECT tenant_id, segment, day::text, delivered, opened, clicked, "
        "converted, unsubscribed FROM marts.campaign_performance",
    ):
        for event_type, count in zip(
            ("delivered", "opened", "clicked", "converted", "unsubscribed"), counts, strict=True
        ):
            if count:
                counted[(tenant, segment, day, event_type)] = count
    assert len(events) > 40 and counted == {key: len(pairs) for key, pairs in expected.items()}


def test_segment_membership_collects_every_segment_model(built, warehouse):
    counts = dict(
        rows(warehouse, f"SELECT source_model, count(*) FROM {MEMBERSHIP} WHERE as_of_date = %s GROUP BY 1", LAST)
    )
    assert set(counts) == {
        "segment_rfm",
        "segment_lifecycle",
        "segment_behavioural",
        "segment_demographic",
        "segment_big_spenders",
    }
    for model, members in counts.items():
        assert rows(warehouse, f"SELECT count(*) FROM segments.{model}") == [(members,)], model


def test_an_analysts_segment_needs_no_other_change(built, warehouse, tmp_path):
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_DIR / "dbt_project", project_dir, ignore=shutil.ignore_patterns("target", "logs"))
    (project_dir / "models/segments/custom/segment_new_in_town.sql").write_text(
        "select tenant_id, cdp_customer_id, 'new_in_town' as segment, {{ as_of_date() }} as as_of_date\n"
        "from {{ ref('customer_360') }} where city is not null and orders = 0\n"
    )
    project = prepare(cdp_dbt_project(project_dir))
    assets, _ = build_dbt_definitions(project)
    membership = next(a for a in assets if AssetKey(["segments", "segment_membership"]) in a.keys)
    assert (
        AssetKey(["segments", "segment_new_in_town"])
        in membership.asset_deps[AssetKey(["segments", "segment_membership"])]
    )

    os.environ.update(warehouse.dbt_env())
    dbt_cli(project).cli(
        ["build", "--select", "segment_new_in_town", "--vars", json.dumps({"as_of_date": LAST.isoformat()})],
        target_path=project.target_path,
    ).wait()
    with warehouse.connect() as conn:
        sizes = publish_membership(
            conn, segment_models(json.loads(project.manifest_path.read_text())), LAST.isoformat()
        )
    expected = rows(warehouse, "SELECT count(*) FROM marts.customer_360 WHERE city IS NOT NULL AND orders = 0")[0][0]
    assert expected > 0 and sizes["new_in_town"] == expected


INCREMENTAL = {
    "marts.fct_orders": "tenant_id, order_id",
    "marts.fct_order_lines": "tenant_id, line_id",
    "marts.fct_events": "tenant_id, message_id",
    "marts.product_perf_daily": "tenant_id, product_id, day",
}


def test_an_incremental_run_of_one_day_restores_it_with_no_duplicate(built, dagster_instance, warehouse):
    """The incremental facts' last day is deleted, then one partition run of them rebuilds it (the
    late-data window reopens the days before it too): the tables are as the full build left them."""
    lake, _ = built
    before = {
        table: rows(warehouse, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[0]
        for table, key in INCREMENTAL.items()
    }
    with warehouse.connect() as conn:
        conn.execute("DELETE FROM marts.fct_orders WHERE event_date = %s", (LAST,))
        conn.execute("DELETE FROM marts.fct_events WHERE event_date = %s", (LAST,))
        conn.execute("DELETE FROM marts.product_perf_daily WHERE day = %s", (LAST,))
        conn.commit()
    assert rows(warehouse, "SELECT count(*) FROM marts.fct_orders")[0][0] < before["marts.fct_orders"][0]
    result = run_assets(
        lake, dagster_instance, LAST, LAST, selection=[t.replace(".", "/") for t in INCREMENTAL], warehouse=warehouse
    )
    assert result.success
    after = {
        table: rows(warehouse, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[0]
        for table, key in INCREMENTAL.items()
    }
    assert after == before and all(total == distinct > 0 for total, distinct in after.values())


def test_a_changed_late_days_changes_the_window_dbt_reopens(built, dagster_instance, warehouse, monkeypatch):
    """fct_orders loses the day before the last; a run of the last day re-opens it only when
    CDP_LATE_DAYS reaches back that far: with 0 the day stays missing, with 1 it is restored."""
    lake, _ = built
    count = "SELECT count(*) FROM marts.fct_orders WHERE event_date = %s"
    (before,) = rows(warehouse, count, FIRST)[0]
    with warehouse.connect() as conn:
        conn.execute("DELETE FROM marts.fct_orders WHERE event_date = %s", (FIRST,))
        conn.commit()
    restored = {}
    for days in (0, 1):
        monkeypatch.setenv("CDP_LATE_DAYS", str(days))
        result = run_assets(lake, dagster_instance, LAST, LAST, selection=["marts/fct_orders"], warehouse=warehouse)
        assert result.success
        restored[days] = rows(warehouse, count, FIRST)[0][0]
    assert before > 0 and restored == {0: 0, 1: before}


def test_equal_values_get_equal_rfm_scores(built, warehouse):
    """On the sample's purchases (many buyers with one order, many with the same last order day):
    buyers with the same recency, frequency or monetary value have the same score."""
    split = {
        score: rows(
            warehouse,
            f"SELECT count(*) FROM (SELECT tenant_id, {value} FROM segments.segment_rfm GROUP BY 1, 2 "
            f"HAVING count(DISTINCT {score}) > 1) AS split_values",
        )[0][0]
        for value, score in (("recency_days", "r_score"), ("frequency", "f_score"), ("monetary_usd", "m_score"))
    }
    (one_order_buyers,) = rows(warehouse, "SELECT count(*) FROM segments.segment_rfm WHERE frequency = 1")[0]
    assert one_order_buyers > 5 and split == {"r_score": 0, "f_score": 0, "m_score": 0}
    assert rows(warehouse, "SELECT DISTINCT f_score FROM segments.segment_rfm WHERE frequency = 1") == [(1,)]


def test_unit_tests_pass(built, warehouse):
    """dbt's unit tests (RFM scores and ties, lifecycle rules, segment models, attribution) run and pass."""
    project = cdp_dbt_project()
    unit_tests = {t["name"] for t in json.loads(project.manifest_path.read_text())["unit_tests"].values()}
    os.environ.update(warehouse.dbt_env())
    invocation = dbt_cli(project).cli(["test", "--select", "test_type:unit"], raise_on_error=False).wait()
    results = {
        r["unique_id"].split(".")[-1]: r["status"] for r in invocation.get_artifact("run_results.json")["results"]
    }
    assert {
        "rfm_equal_values_score_the_same",
        "rfm_segment_rules",
        "lifecycle_stages_at_their_boundaries",
    } <= unit_tests
    assert results == dict.fromkeys(unit_tests, "pass")
