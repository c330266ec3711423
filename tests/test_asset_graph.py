"""The first asset graph end to end: raw manifests → curated Delta events, on real Spark, Delta and a
PostgreSQL-backed Dagster instance, checked against the generator's ground truth."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from dagster import AssetKey, DagsterRunStatus

from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz, encode_ndjson_gz, raw_key
from cdp_sampledata.streams import DRIFT_FIELD
from tests.conftest import SAMPLE_CONFIG, run_assets
from tests.test_generator import event_time

pytestmark = pytest.mark.slow
EVENTS = ["raw/app/events", "curated/events"]


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
