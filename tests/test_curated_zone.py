"""The curated zone on generator data, against its ground truth: the dirt it injected is found
(duplicates removed, invalid emails and non-positive amounts dead-lettered, phones and emails
normalised, companies and USD amounts enriched); historic equals incremental row for row; reruns
and late files change exactly what they should; the critical-failure threshold stops a bad day."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlparse

import phonenumbers
import pytest
from dagster import Definitions
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from cdp_assets.curated_checks import DAY, StoredTable, counted_counts, counts, logged_counts
from cdp_assets.keys import curated_key
from cdp_assets.maintenance import delta_maintenance
from cdp_resources.delta_tables import replace_partitions
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import curated_path, dead_letter_path
from cdp_resources.raw_zone import decode_ndjson_gz, encode_ndjson_gz, raw_key
from cdp_transform.company_reference import company_reference_key, parse_company_reference
from cdp_transform.curated_store import read_dead_letters
from cdp_transform.entities import BY_TABLE, ENTITIES
from cdp_transform.lineage import RunLineage
from cdp_transform.quality_schema import pandera_schema, required_columns
from cdp_transform.raw_reader import read_raw
from tests.conftest import CURATED_CONFIG, assert_same_rows, comparable, dictionary_encoded, run_assets
from tests.test_generator import EMAIL

pytestmark = pytest.mark.slow
CONFIG = CURATED_CONFIG
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)


@pytest.fixture
def lakes(curated_lakes):
    return curated_lakes


@pytest.fixture
def historic(curated_historic):
    return curated_historic


def table(spark, lake, name):
    return spark.read.format("delta").load(lake.spark_path(f"curated/{name}"))


def materialization(result, name):
    """The first materialisation of curated `name` in `result` (one per day, with the same run metadata)."""
    return next(m for m in result.asset_materializations_for_node("curated_tables") if m.asset_key == curated_key(name))


def truth(lake) -> tuple[list[dict], list[dict]]:
    persons = list(decode_ndjson_gz(lake.read_bytes("truth/acme_corp/persons.ndjson.gz")))
    dirt = [row for obj in lake.list("truth/acme_corp/dirt/") for row in decode_ndjson_gz(lake.read_bytes(obj.key))]
    return persons, dirt


def test_dirt_is_found_against_the_truth(spark, historic):
    lake, result = historic
    persons, dirt = truth(lake)

    def kinds(kind, streams):
        return sum(1 for d in dirt if d["dirt"] == kind and d["stream"] in streams)

    letters = read_dead_letters(spark, lake)

    events = materialization(result, "events")
    assert events.metadata["duplicates_removed"].value == kinds("duplicate", {"app/events"})
    email_streams = {
        "shopify/customers": ("shopify_customers", "customer_id", "$.id"),
        "stripe/customers": ("stripe_customers", "customer_id", "$.id"),
        "salesforce/contacts": ("contacts", "contact_id", "$.Id"),
    }
    for stream, (name, key, raw_key_path) in email_streams.items():
        caught = {
            r.id
            for r in letters.where(F.array_contains("rules", "email_format") & (F.col("table") == name))
            .select(F.get_json_object("record", raw_key_path).alias("id"))
            .collect()
        }
        rows = table(spark, lake, name).collect()
        injected = {str(d["id"]) for d in dirt if d["dirt"] == "invalid_email" and d["stream"] == stream}
        assert caught and caught <= injected  # nothing valid was dead-lettered as an invalid email …
        assert injected - caught <= {str(r[key]) for r in rows}  # … the rest were superseded by a newer version …
        assert all(EMAIL.match(r.email) for r in rows if r.email)  # … and no invalid email reached the table
    non_positive = letters.where(F.col("rule").isin("order_total_positive", "amount_positive")).count()
    assert non_positive == kinds("non_positive_amount", {"shopify/orders", "stripe/charges"})

    by_shopify_id = {p["shopify_customer_id"]: p for p in persons if p["shopify_customer_id"]}
    customers = table(spark, lake, "shopify_customers").collect()
    assert customers

    def valid_phone(e164):
        return phonenumbers.is_valid_number(phonenumbers.parse(e164))

    for row in customers:
        person = by_shopify_id[row.customer_id]
        assert row.email == person["email"] and row.country == person["country"]
        if row.phone is not None or valid_phone(person["phone_e164"]):
            assert row.phone in (person["phone_e164"], None)
    phones = [row for row in customers if row.phone]
    assert len(phones) / len(customers) > 0.8 and all(
        row.phone == by_shopify_id[row.customer_id]["phone_e164"] for row in phones
    )

    # The tenant's own company reference, as the generator dropped it in the lake.
    reference = {
        r[1]: r for r in parse_company_reference("acme_corp", lake.read_bytes(company_reference_key("acme_corp")))
    }
    enriched = [row for row in customers if by_shopify_id[row.customer_id]["company_domain"] in reference]
    assert enriched and all(row.company_name == reference[row.email_domain][2] for row in enriched)
    assert all(
        row.company_name is None for row in customers if by_shopify_id[row.customer_id]["company_domain"] is None
    )

    rates = {(str(r.event_date), r.currency): r.rate for r in table(spark, lake, "fx_rates").collect()}
    orders = table(spark, lake, "orders").collect()
    for order in orders:
        expected = (
            order.total
            if order.currency == "USD"
            else round(float(order.total) / rates[(str(order.event_date), order.currency)], 2)
        )
        assert abs(float(order.total_usd) - float(expected)) <= 0.01


def test_checks_pass_and_metadata_is_complete(historic):
    _, result = historic
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) == 23 and all(e.passed for e in evaluations)
    for spec in ENTITIES:
        metadata = materialization(result, spec.table).metadata
        assert {
            "dagster/row_count",
            "rows_in",
            "duplicates_removed",
            "dead_lettered_by_rule",
            "warnings_by_rule",
            "quality_score",
            "preview",
        } <= set(metadata)
        assert 0.5 < metadata["quality_score"].value <= 1.0


def test_checks_take_from_the_log_what_spark_counts_in_the_rows(spark, historic):
    """Every file the curated job wrote has the statistics the checks read from the log (delta-rs),
    and they give what Spark counts in the rows: rows per day, and the nulls of each column pandera
    requires (for the dead letters: `tenant_id`'s)."""
    lake, _ = historic
    for spec in ENTITIES:
        required = [c for c in required_columns(pandera_schema(spec)) if c != DAY]
        for key, columns in ((curated_path(spec.table), required), (dead_letter_path(spec.table), ["tenant_id"])):
            log = lake.delta_log(key)
            if log is None:  # a table with no dead letters has no dead-letter table
                continue
            logged = logged_counts(log, FIRST, LAST, columns)
            assert logged is not None and sum(logged[0].values()) > 0, key
            assert logged == counted_counts(
                spark.read.format("delta").load(lake.spark_path(key)), FIRST, LAST, columns
            ), key


def test_checks_count_in_spark_a_table_without_the_statistics(spark, tmp_path):
    """A table whose files have no statistics on a column the checks need (made before the curated
    tables kept them) is counted in Spark."""
    path = str(tmp_path / "table")
    day = date(2026, 1, 1)
    frame = spark.createDataFrame(
        [("acme", day, None), ("acme", day, "f1"), ("acme", day + timedelta(days=1), "f2")],
        "tenant_id string, event_date date, _source_file string",
    )
    replace_partitions(frame, path, "event_date", day, day + timedelta(days=1), stats_columns=["tenant_id"])
    stored = StoredTable.at(spark, LakeResource(base_uri=str(tmp_path)), "table")
    assert logged_counts(stored.log, day, day, ["_source_file"]) is None
    assert logged_counts(stored.log, day, day, ["tenant_id"]) == ({str(day): 2}, {"tenant_id": 0})
    assert counts(stored, day, day, ["_source_file"]) == ({str(day): 2}, {"_source_file": 1})


def test_checks_count_in_spark_a_table_with_deletion_vectors(spark, tmp_path):
    """A file's statistics also count the rows its deletion vector deleted since: a table that may
    have deletion vectors is counted in Spark."""
    path = str(tmp_path / "table")
    day = date(2026, 1, 1)
    frame = spark.createDataFrame(
        [("acme", day, "f1"), ("acme", day, "f2")], "tenant_id string, event_date date, _source_file string"
    )
    frame.coalesce(1).write.format("delta").partitionBy("event_date").option(
        "delta.enableDeletionVectors", "true"
    ).save(path)
    DeltaTable.forPath(spark, path).delete("_source_file = 'f1'")  # the file stays, with a vector marking f1
    stored = StoredTable.at(spark, LakeResource(base_uri=str(tmp_path)), "table")
    assert logged_counts(stored.log, day, day, []) is None
    assert counts(stored, day, day, ["_source_file"]) == ({str(day): 1}, {"_source_file": 0})


def test_checks_read_the_rows_at_the_version_of_the_log(spark, tmp_path):
    """A commit between the checks' read of a table's log and of its rows (another run writing it)
    does not reach the checks: they see the columns and the rows of the version whose log they read."""
    path, lake = str(tmp_path / "table"), LakeResource(base_uri=str(tmp_path))
    day = date(2026, 1, 1)
    frame = spark.createDataFrame(
        [("acme", day, "f1"), ("acme", day, "f2")], "tenant_id string, event_date date, _source_file string"
    )
    replace_partitions(frame, path, "event_date", day, day)
    log = lake.delta_log("table")
    later = spark.createDataFrame(
        [("acme", day, "f3", "new")], "tenant_id string, event_date date, _source_file string, note string"
    )
    later.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
    stored = StoredTable.of(spark, lake, "table", log)
    assert "note" not in stored.rows.columns
    assert counted_counts(stored.rows, day, day, ["_source_file"]) == ({str(day): 2}, {"_source_file": 0})
    assert StoredTable.at(spark, lake, "table").rows.count() == 3


def test_only_few_valued_columns_are_dictionary_encoded(spark, historic):
    lake, _ = historic
    for spec in ENTITIES:
        assert set(spec.categorical) <= {f.name for f in spec.fields}, spec.table
        rows = table(spark, lake, spec.table)
        properties = DeltaTable.forPath(spark, lake.spark_path(curated_path(spec.table))).detail().first().properties
        plain = {
            key.split("#")[1]
            for key, value in properties.items()
            if key.startswith("parquet.enable.dictionary#") and value == "false"
        }
        flat = {f.name for f in rows.schema.fields if f.dataType.typeName() not in ("array", "map", "struct")}
        assert plain == flat - set(spec.dictionary_columns), spec.table
        files = {path: dictionary_encoded(urlparse(path).path) for path in rows.inputFiles()}
        # Every file follows its table's settings: none dictionary-encodes a column the table keeps plain.
        assert not [path for path, encoded in files.items() if any(encoded[column] for column in plain)], spec.table
        if spec.table == "events":
            assert {"message_id", "event_ts"} <= plain
            assert all(encoded["tenant_id"] and encoded["type"] for encoded in files.values())
        dead_letters = dead_letter_path(spec.table)
        if lake.is_delta_table(dead_letters):  # the dead-letter tables keep their records plain
            for path in spark.read.format("delta").load(lake.spark_path(dead_letters)).inputFiles():
                assert not dictionary_encoded(urlparse(path).path)["record"], path


def test_historic_equals_incremental(spark, historic, lakes, dagster_instance):
    lake, _ = historic
    incremental = lakes[1]
    for offset in range(CONFIG.days):
        day = FIRST + timedelta(days=offset)
        assert run_assets(incremental, dagster_instance, day, day).success
    for spec in ENTITIES:
        assert_same_rows(table(spark, lake, spec.table), table(spark, incremental, spec.table), spec.table)
    assert_same_rows(read_dead_letters(spark, lake), read_dead_letters(spark, incremental), "dead letters")


def test_late_file_reopens_only_its_day(spark, historic, dagster_instance):
    lake, _ = historic
    version = DeltaTable.forPath(spark, lake.spark_path("curated/events")).history(1).first().version
    before = {
        "events": comparable(
            spark.read.format("delta").option("versionAsOf", version).load(lake.spark_path("curated/events"))
        )
    }
    late = [
        {
            "message_id": f"late-{i}",
            "type": "track",
            "event": "page_view",
            "anonymous_id": f"a{i}",
            "timestamp": f"{FIRST}T12:00:00Z",
            "properties": {"url": "/"},
        }
        for i in range(7)
    ]
    flushed = datetime.combine(FIRST + timedelta(days=3), datetime.min.time(), UTC)
    lake.write_bytes(raw_key("acme_corp", "app", "events", FIRST, flushed, 0), encode_ndjson_gz(late + late[:2]))
    # what the raw-file sensor requests for this file: the day's raw events and everything downstream
    assert run_assets(lake, dagster_instance, FIRST, FIRST, ["raw/app/events", "curated/events"]).success

    after = comparable(table(spark, lake, "events"))
    added = after.exceptAll(before["events"])
    assert after.count() == before["events"].count() + 7 and added.count() == 7  # the late ones, once each
    assert {r.event_date for r in added.select("event_date").distinct().collect()} == {FIRST}
    assert before["events"].exceptAll(after).count() == 0  # nothing else changed, other days included


def test_raw_reader_keeps_the_records_of_tenants_whose_ids_need_quoting(any_lake, spark_resource):
    """Spark names an input file by its URI, where a space, `%` or `&` in a tenant id is
    percent-encoded, and reads a path with `[`, `{`, `*` or `?` as a pattern: every record still
    arrives once, with its own file's lineage (local and S3 lake)."""
    lake, spark = any_lake, spark_resource.session_for(any_lake)
    flushed = datetime(2026, 2, 2, 3, tzinfo=UTC)
    deliveries = {
        ("acme 100% & café", date(2026, 2, 1), 0): 3,
        ("acme 100% & café", date(2026, 2, 2), 1): 2,
        ("globex", date(2026, 2, 1), 2): 1,
        ("b[ae]ta {x,y}*?", date(2026, 2, 1), 3): 4,
        ("beta xyz", date(2026, 2, 1), 3): 5,
    }
    for (tenant, day, seq), count in deliveries.items():
        events = [
            {"message_id": f"{tenant}-{day}-{i}", "type": "track", "event": "page_view", "anonymous_id": "a"}
            for i in range(count)
        ]
        lake.write_bytes(raw_key(tenant, "app", "events", day, flushed, seq), encode_ndjson_gz(events))
    lineage = RunLineage("app", "run-1", tuple(sorted(lake.spark_path(o.key) for o in lake.list("raw/"))))
    rows = read_raw(spark, BY_TABLE["events"], lineage).select(
        "tenant_id", "event_date", "_file", F.col("_ingest_ts").cast("string")
    )
    expected = {
        (
            tenant,
            day,
            lineage.files.index(lake.spark_path(raw_key(tenant, "app", "events", day, flushed, seq))),
            "2026-02-02 03:00:00",
        ): count
        for (tenant, day, seq), count in deliveries.items()
    }
    assert Counter(tuple(r) for r in rows.collect()) == expected


def test_critical_threshold_fails_the_day_naming_the_rule(spark, tmp_path, dagster_instance):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    day = date(2026, 2, 1)
    orders = [
        {
            "id": i,
            "created_at": f"{day}T10:00:00Z",
            "currency": "USD",
            "total_price": "0.00" if i % 2 else "9.99",
            "customer": {"id": 1},
            "line_items": [],
        }
        for i in range(20)
    ]
    lake.write_bytes(
        raw_key("acme_corp", "shopify", "orders", day, datetime(2026, 2, 1, 23, tzinfo=UTC), 0),
        encode_ndjson_gz(orders),
    )
    result = run_assets(
        lake, dagster_instance, day, day, ["raw/shopify/orders", "curated/orders"], raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "order_total_positive" in failure.message or "order_total_positive" in str(failure.event_specific_data.error)
    assert not lake.list("curated/orders/_delta_log/")  # nothing written for the failed day


def test_dead_letters_follow_reruns_and_clean_days_write_none(spark, tmp_path, dagster_instance):
    """A clean day adds no transaction to the dead-letter table (here: it is never created, and the
    reconciliation check still passes); a rerun of a day replaces its dead letters, clearing them
    when the corrected delivery has none."""
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    day = date(2026, 2, 1)

    def deliver(totals: list[str]):
        orders = [
            {
                "id": i,
                "created_at": f"{day}T10:00:00Z",
                "currency": "USD",
                "total_price": total,
                "customer": {"id": 1},
                "line_items": [],
            }
            for i, total in enumerate(totals)
        ]
        lake.write_bytes(
            raw_key("acme_corp", "shopify", "orders", day, datetime(2026, 2, 1, 23, tzinfo=UTC), 0),
            encode_ndjson_gz(orders),
        )

    def letters() -> int:
        return read_dead_letters(spark, lake).where("table = 'orders'").count()

    deliver(["9.99"] * 20)
    assert run_assets(lake, dagster_instance, day, day, ["raw/shopify/orders", "curated/orders"], checks=True).success
    assert not lake.list(f"{dead_letter_path('orders')}/_delta_log/")
    deliver(["9.99"] * 18 + ["0.00", "-1"])
    assert run_assets(lake, dagster_instance, day, day, ["raw/shopify/orders", "curated/orders"]).success
    assert letters() == 2
    deliver(["9.99"] * 20)  # the corrected delivery replaces the file
    assert run_assets(lake, dagster_instance, day, day, ["raw/shopify/orders", "curated/orders"]).success
    assert letters() == 0 and table(spark, lake, "orders").count() == 20


def curated_orders_day(tmp_path, dagster_instance, orders: int) -> tuple[LakeResource, date]:
    """A lake with one raw file of `orders` clean orders on one day, run through the raw and curated
    orders assets: the lake and the day."""
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    day = date(2026, 2, 1)
    records = [
        {
            "id": i,
            "created_at": f"{day}T10:00:00Z",
            "currency": "USD",
            "total_price": "9.99",
            "customer": {"id": 1},
            "line_items": [],
        }
        for i in range(orders)
    ]
    lake.write_bytes(
        raw_key("acme_corp", "shopify", "orders", day, datetime(2026, 2, 1, 23, tzinfo=UTC), 0),
        encode_ndjson_gz(records),
    )
    assert run_assets(lake, dagster_instance, day, day, ["raw/shopify/orders", "curated/orders"]).success
    return lake, day


def test_checks_run_alone_find_a_lost_row_and_a_null_key(spark, tmp_path, dagster_instance):
    """The checks, run alone, check the days of the latest materialisation as the lake holds them
    now: a curated row deleted since fails the reconciliation, naming the day; a null key fails
    pandera's schema, which blocks (the step fails)."""
    lake, day = curated_orders_day(tmp_path, dagster_instance, 20)

    def checks_alone():
        result = run_assets(
            lake, dagster_instance, day, day, ["curated/orders"], only_checks=True, raise_on_error=False
        )
        assert not result.asset_materializations_for_node("curated_tables")
        return result, {
            e.event_specific_data.check_name: e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }

    result, evaluations = checks_alone()
    assert result.success and all(e.passed for e in evaluations.values()) and len(evaluations) == 2
    orders_table = DeltaTable.forPath(spark, lake.spark_path("curated/orders"))
    orders_table.delete("order_id = 3")
    result, evaluations = checks_alone()
    assert result.success and evaluations["pandera_schema"].passed and not evaluations["reconciles_with_raw"].passed
    assert evaluations["reconciles_with_raw"].metadata["mismatches"].value == {
        str(day): {"raw": 20, "curated": 19, "dead_lettered": 0, "duplicates": 0}
    }
    orders_table.update("order_id = 4", {"order_id": "NULL"})
    # Rewritten files keep their statistics: the checks read the null from the log.
    assert logged_counts(lake.delta_log("curated/orders"), day, day, ["order_id"]) == ({str(day): 19}, {"order_id": 1})
    result, evaluations = checks_alone()
    assert not result.success and not evaluations["pandera_schema"].passed
    assert "order_id" in str(evaluations["pandera_schema"].metadata["errors"].value)


def test_checks_that_cannot_read_the_table_fail_naming_why(tmp_path, dagster_instance):
    """A table the checks cannot read (its commit damaged after the run) fails both checks, each
    naming the error, and the blocking one fails the run; the checks do not raise."""
    lake, day = curated_orders_day(tmp_path, dagster_instance, 5)
    for log_file in lake.list("curated/orders/_delta_log/0"):
        lake.write_bytes(log_file.key, b"{not json")
    result = run_assets(lake, dagster_instance, day, day, ["curated/orders"], only_checks=True, raise_on_error=False)
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not result.success and len(evaluations) == 2
    assert all(not e.passed and e.metadata["error"].value.startswith("the checks could not run: ") for e in evaluations)


def test_weekly_maintenance_optimizes_and_vacuums(spark, spark_resource, historic):
    lake, _ = historic
    maintenance = Definitions(jobs=[delta_maintenance], resources={"lake": lake, "spark": spark_resource})
    result = maintenance.resolve_job_def("delta_maintenance").execute_in_process(
        run_config={"ops": {"optimize_and_vacuum": {"config": {"retention_hours": 0, "tables": ["curated/events"]}}}},
        op_selection=["optimize_and_vacuum"],  # the shared sample keeps its files (retention: test_privacy.py)
    )
    assert result.success
    operations = {r.operation for r in DeltaTable.forPath(spark, lake.spark_path("curated/events")).history().collect()}
    assert {"OPTIMIZE", "VACUUM START", "VACUUM END"} <= operations
    untouched = {r.operation for r in DeltaTable.forPath(spark, lake.spark_path("curated/orders")).history().collect()}
    assert "OPTIMIZE" not in untouched
    assert table(spark, lake, "events").count() > 0  # still readable after vacuum
