"""The first asset graph end to end: raw manifests → curated Delta events, on real Spark, Delta and a
PostgreSQL-backed Dagster instance, checked against the generator's ground truth."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import AssetKey, DagsterRunStatus, PartitionKeyRange

from cdp_assets.dbt import MEMBERSHIP
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.local_ports import free_port
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz, encode_ndjson_gz, raw_key
from cdp_sampledata.streams import DRIFT_FIELD
from tests.conftest import LAKE_DAILY_CONFIG, SAMPLE_CONFIG, run_assets
from tests.test_generator import event_time

pytestmark = pytest.mark.slow
EVENTS = ["raw/app/events", "curated/events"]
CDP = str(Path(sys.executable).parent / "cdp")


def run_days(lake, instance, first, last):
    return run_assets(lake, instance, first, last, EVENTS + ["raw/shopify/customers"])


def expected_events_per_day(lake) -> tuple[Counter, int]:
    """Distinct (tenant, event) per UTC event day, read straight from the raw files; and the delivered total."""
    seen, delivered = {}, 0
    for obj in lake.list("raw/"):
        match = RAW_KEY.match(obj.key)
        if (match["provider"], match["stream"]) == ("app", "events"):
            day = date(int(match["year"]), int(match["month"]), int(match["day"]))
            for record in decode_ndjson_gz(lake.read_bytes(obj.key)):
                delivered += 1
                assert event_time(record["timestamp"]).astimezone(UTC).date() == day
                seen[(match["tenant"], record["message_id"])] = day
    return Counter(seen.values()), delivered


def curated_per_day(spark, lake) -> Counter:
    table = spark.read.format("delta").load(lake.spark_path("curated/events"))
    assert table.groupBy("tenant_id", "message_id").count().where("count > 1").count() == 0
    return Counter({row.event_date: row["count"] for row in table.groupBy("event_date").count().collect()})


def test_backfill_then_rerun_one_partition(spark, sample_lake, dagster_instance, postgres):
    first = SAMPLE_CONFIG.start
    last = first + timedelta(days=SAMPLE_CONFIG.days - 1)
    expected, delivered = expected_events_per_day(sample_lake)
    writer = RawBatchWriter(sample_lake, SchemaRegistry(), "globex", "shopify", source="test")
    writer.add("customers", {"id": "not-an-int", "updated_at": f"{first + timedelta(days=1)}T10:00:00Z"})
    writer.flush()

    backfill = run_days(sample_lake, dagster_instance, first, last)
    assert backfill.success
    assert curated_per_day(spark, sample_lake) == expected

    event = dagster_instance.get_latest_materialization_event(AssetKey(["curated", "events"]))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == sum(expected.values())
    assert metadata["rows_in"].value == delivered
    assert metadata["rows_in"].value - metadata["duplicates_removed"].value == sum(expected.values())
    assert metadata["dead_lettered"].value == 0
    raw_event = dagster_instance.get_latest_materialization_event(AssetKey(["raw", "app", "events"]))
    assert raw_event.asset_materialization.metadata["dagster/row_count"].value == delivered
    customers = dagster_instance.get_latest_materialization_event(AssetKey(["raw", "shopify", "customers"]))
    customer_meta = customers.asset_materialization.metadata
    drift = customer_meta["schema_drift"].value[DRIFT_FIELD]
    assert drift["count"] > 0 and set(drift["example"]) == {"state", "opt_in_level"}
    assert customer_meta["dead_letters_by_rule"].value == {"schema_violation": 1}

    rerun = run_days(sample_lake, dagster_instance, first + timedelta(days=2), first + timedelta(days=2))
    assert rerun.success
    assert curated_per_day(spark, sample_lake) == expected

    with psycopg.connect(postgres.url("dagster")) as conn:
        stored = dict(
            conn.execute(
                "SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", ([backfill.run_id, rerun.run_id],)
            ).fetchall()
        )
    assert stored == {backfill.run_id: DagsterRunStatus.SUCCESS.value, rerun.run_id: DagsterRunStatus.SUCCESS.value}


def test_a_damaged_raw_file_is_reported_and_left_out(spark, tmp_path, dagster_instance):
    """A raw file cut short (disk or copy failure) does not fail the day: it is reported, and the
    complete records of the other files still land."""
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    day = SAMPLE_CONFIG.start
    flushed = datetime(day.year, day.month, day.day, 23, tzinfo=UTC)
    good = [
        {
            "message_id": f"m{i}",
            "type": "track",
            "event": "page_view",
            "anonymous_id": f"a{i}",
            "timestamp": f"{day}T10:00:00Z",
        }
        for i in range(10)
    ]
    lake.write_bytes(raw_key("acme_corp", "app", "events", day, flushed, 0), encode_ndjson_gz(good))
    whole = encode_ndjson_gz([{**r, "message_id": f"x{r['message_id']}"} for r in good])
    lake.write_bytes(raw_key("acme_corp", "app", "events", day, flushed, 1), whole[: len(whole) // 2])

    assert run_days(lake, dagster_instance, day, day).success
    raw_meta = dagster_instance.get_latest_materialization_event(
        AssetKey(["raw", "app", "events"])
    ).asset_materialization.metadata
    (damaged,) = raw_meta["damaged_files"].value
    assert damaged["key"].endswith("_0001.ndjson.gz") and "truncated" in damaged["error"]
    curated = dagster_instance.get_latest_materialization_event(
        AssetKey(["curated", "events"])
    ).asset_materialization.metadata
    assert curated["damaged_raw_files_skipped"].value == 1 and curated["dagster/row_count"].value == 10


def test_lake_daily_materialises_the_whole_graph_for_the_scheduled_days(spark, lake_daily_run):
    """The daily schedule's run request, executed as the real `lake_daily` job: every asset of the
    job materialised for the sample's days, every asset check passed, and each layer agrees with the one
    before it (raw → curated → profiles → dbt's customer_360 → membership → audiences → the destination)."""
    from cdp_assets.definitions import defs

    lake, warehouse, result = lake_daily_run["lake"], lake_daily_run["warehouse"], lake_daily_run["result"]
    first, last = LAKE_DAILY_CONFIG.start, LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    assert lake_daily_run["request"].partition_key_range == PartitionKeyRange(first.isoformat(), last.isoformat())
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failed

    job_keys = set(defs.resolve_job_def("lake_daily").asset_layer.executable_asset_keys)
    assert {e.asset_key for e in result.get_asset_materialization_events()} == job_keys
    assert len(job_keys) > 60
    checks = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(checks) > 40 and [c.check_name for c in checks if not c.passed] == []

    expected_events, _ = expected_events_per_day(lake)
    assert curated_per_day(spark, lake) == expected_events
    profiles = spark.read.format("delta").load(lake.spark_path("profiles/customer_profiles")).count()
    with warehouse.connect() as conn:
        assert conn.execute("SELECT count(*) FROM marts.customer_360").fetchone() == (profiles,)
        sizes = dict(
            conn.execute(
                f"SELECT tenant_id || '/' || segment, count(*) FROM {MEMBERSHIP} WHERE as_of_date = %s GROUP BY 1",
                (last,),
            ).fetchall()
        )
    assert sizes and sum(sizes.values()) > 0
    exported = {
        f"{m['tenant']}/{m['segment']}": m["members"]
        for m in (
            json.loads(lake.read_bytes(obj.key))
            for obj in lake.list("audiences/")
            if obj.key.endswith(f"/date={last}/_manifest.json")
        )
    }
    assert exported == sizes
    sync = result.asset_materializations_for_node("activation__sync_crm_files")[-1].metadata  # the range's last day
    assert sync["members"].value == sum(sizes.values()) and sync["failed"].value == 0
    assert sync["sent"].value == sync["members"].value - sync["excluded_for_consent"].value  # purpose email_marketing


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_dbt_docs_asset_and_cdp_dbt_docs_serve_the_built_warehouse(lake_daily_run, tmp_path):
    """`docs/dbt_docs` (run by the whole job) writes dbt's site from the warehouse it built, and `cdp dbt
    docs` serves it over HTTP: index.html, the catalog (the warehouse's own columns) and the manifest."""
    from cdp_assets.dbt import dbt_project, docs_path

    target = docs_path(dbt_project)
    (docs,) = lake_daily_run["result"].asset_materializations_for_node("docs__dbt_docs")
    assert docs.metadata["index"].value == str(target / "index.html")
    for name in ("index.html", "catalog.json", "manifest.json"):
        assert (target / name).stat().st_mtime >= lake_daily_run["started"].timestamp(), name
    with lake_daily_run["warehouse"].connect() as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
                "AND table_name = 'customer_360' ORDER BY ordinal_position"
            ).fetchall()
        ]

    port = free_port()
    env = {**os.environ, "CDP_POSTGRES_URL": lake_daily_run["warehouse"].dsn()}
    log = open(tmp_path / "dbt-docs.log", "wb")  # noqa: SIM115 (closed after the server stops, in finally)
    process = subprocess.Popen(
        [CDP, "dbt", "docs", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "dbt-docs.log").read_text()[-3000:]
            try:
                index = _get(f"{base}/index.html")
                break
            except OSError:
                assert time.monotonic() < deadline, "cdp dbt docs did not serve in 120 s"
                time.sleep(1)
        assert index == (target / "index.html").read_bytes()
        catalog = json.loads(_get(f"{base}/catalog.json"))
        served = catalog["nodes"]["model.cdp.customer_360"]["columns"]
        assert sorted(served, key=lambda c: served[c]["index"]) == columns
        manifest = json.loads(_get(f"{base}/manifest.json"))
        assert {"model.cdp.customer_360", "model.cdp.segment_rfm"} <= set(manifest["nodes"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
