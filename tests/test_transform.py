"""Each transformation and quality rule on small DataFrames, in the session's Spark."""

import importlib.metadata
import json
import random
import re
from datetime import date
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from cdp_activation.hashing import normalise_phone
from cdp_resources.lake import LakeResource
from cdp_resources.spark_jars import LIBPHONENUMBER_VERSION
from cdp_sampledata.dirt import phone_variant
from cdp_sampledata.population import build_population
from cdp_transform import normalise
from cdp_transform.company_reference import CompanyReferenceError, company_reference_key, parse_company_reference
from cdp_transform.conform import Field, conform
from cdp_transform.dedup import latest_version
from cdp_transform.enrich import company_by_domain, read_company_references, to_usd
from cdp_transform.entities import BY_TABLE
from cdp_transform.lineage import LINEAGE, RunLineage
from cdp_transform.pipeline import curate, flag_known_customer, flag_shared_email, partition_stats, split
from cdp_transform.quality_schema import pandera_schema, schema_errors
from cdp_transform.rules import apply_rules

TEST_LINEAGE = RunLineage("test", "run", ("f.ndjson.gz",))


def with_test_lineage(frame):
    """Carried lineage columns as the raw reader adds them (tenant t, event day 2026-01-05, the one file of `TEST_LINEAGE`)."""
    return frame.select(
        "*",
        F.lit("t").alias("tenant_id"),
        F.lit(date(2026, 1, 5)).alias("event_date"),
        F.lit(0).alias("_file"),
        F.current_timestamp().alias("_ingest_ts"),
    )


def test_email_country_phone_timestamp(spark):
    frame = spark.createDataFrame(
        [
            (1, " Ann.Lee@Example.COM\t", "USA", "(415) 234-5678", "2026-01-05T10:15:00-05:00"),
            (2, "bob@x.org", " United Kingdom", "07911 123456", "1767626100000"),
            (3, "", "deu", "+49 151 12345678", "1767626100"),
            (4, None, "Narnia", "123", "not a time"),
        ],
        "n int, email string, country string, phone string, ts string",
    )
    out = frame.select(
        "n",
        normalise.email("email").alias("email"),
        normalise.country_key("country").alias("key"),
        normalise.timestamp("ts").cast("string").alias("ts"),
        F.col("phone").alias("raw_phone"),
    )
    out = (
        normalise.with_country(out, "key", "country")
        .withColumn("phone", normalise.phone("raw_phone", "country"))
        .orderBy("n")
        .collect()
    )
    assert [r.email for r in out] == ["ann.lee@example.com", "bob@x.org", None, None]
    assert [r.country for r in out] == ["US", "GB", "DE", None]
    assert [r.phone for r in out] == ["+14152345678", "+447911123456", "+4915112345678", None]
    assert [r.ts for r in out] == ["2026-01-05 15:15:00", "2026-01-05 15:15:00", "2026-01-05 15:15:00", None]


def test_conform_routes_type_errors_not_nulls(spark):
    raw = with_test_lineage(
        spark.createDataFrame(
            [("1", "12.50", "2026-01-05"), ("x", None, "soon"), (None, "", None)], "id string, total string, at string"
        )
    )
    typed = conform(
        raw, [Field("id", "id", "bigint"), Field("total", "total", "decimal"), Field("at", "at", "timestamp")]
    )
    result = [(r.id, r.total, r._type_errors) for r in typed.collect()]
    assert result == [(1, Decimal("12.50"), []), (None, None, ["id", "at"]), (None, None, [])]


def test_latest_version_keeps_newest_and_collapses_redeliveries(spark):
    raw = with_test_lineage(
        spark.createDataFrame(
            [
                (1, "2026-01-05T09:00:00Z"),
                (1, "2026-01-05T11:00:00Z"),
                (2, "2026-01-05T08:00:00Z"),
                (2, "2026-01-05T08:00:00Z"),
            ],
            "id long, updated string",
        )
    )
    latest = latest_version(raw.withColumn("updated", F.to_timestamp("updated")), [F.col("id")], [F.col("updated")])
    assert sorted((r.id, str(r.updated)) for r in latest.collect()) == [
        (1, "2026-01-05 11:00:00"),
        (2, "2026-01-05 08:00:00"),
    ]


def test_latest_version_counts_copies_and_keeps_rows_without_a_key_apart(spark):
    raw = with_test_lineage(
        spark.createDataFrame(
            [(1, "a"), (1, "b"), (1, "c"), (None, "d"), (None, "e"), (3, "f")], "id long, payload string"
        )
    )
    latest = sorted((r.id or 0, r._copies) for r in latest_version(raw, [F.col("id")], []).collect())
    assert latest == [(0, 1), (0, 1), (1, 3), (3, 1)]


def test_latest_version_takes_the_last_file_of_a_redelivery_and_lineage_names_it(spark):
    lineage = RunLineage("shopify", "run-7", ("raw/a/x-1.ndjson.gz", "raw/a/x-2.ndjson.gz", "raw/a/x-3.ndjson.gz"))
    raw = spark.createDataFrame(
        [(1, "first", 0), (1, "again", 2), (1, "between", 1), (2, "only", 1)], "id long, payload string, _file int"
    )
    raw = raw.select(
        "id",
        "payload",
        F.lit("t").alias("tenant_id"),
        F.lit(date(2026, 1, 5)).alias("event_date"),
        "_file",
        F.lit(date(2026, 1, 5)).cast("timestamp").alias("_ingest_ts"),
    )
    restored = lineage.restore(latest_version(raw, [F.col("id")], []))
    assert [c for c in restored.columns if c in LINEAGE] == LINEAGE
    rows = sorted((r.id, r.payload, r._source, r._source_file, r._run_id) for r in restored.collect())
    assert rows == [
        (1, "again", "shopify", "raw/a/x-3.ndjson.gz", "run-7"),
        (2, "only", "shopify", "raw/a/x-2.ndjson.gz", "run-7"),
    ]
    with pytest.raises(ValueError, match="path order"):
        RunLineage("shopify", "run-7", ("raw/b", "raw/a"))


def test_company_enrichment_reads_each_tenants_own_reference(spark, tmp_path):
    # Companies the sample generator never draws from: enrichment must not depend on its list.
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    lake.write_bytes(
        company_reference_key("bakery_co"),
        b"domain,company,industry,employees\n"
        b" Crumb-Labs.Example ,Crumb Labs,Food,12\n"
        b"gmail.com,Not A Company,Retail,1\n"
        b"crumb-labs.example,A Duplicate,Food,99\n"
        b",No Domain,Food,3\n"
        b"oven-works.example,Oven Works,Manufacturing,\n",
    )
    lake.write_bytes(
        company_reference_key("other"), b"domain,company,industry,employees\nshared.example,Other Co,Media,5\n"
    )
    companies = read_company_references(spark, lake)
    frame = spark.createDataFrame(
        [
            ("bakery_co", "ann@crumb-labs.example"),
            ("bakery_co", "bob@oven-works.example"),
            ("bakery_co", "cat@gmail.com"),
            ("bakery_co", "dan@shared.example"),  # another tenant's company: not this tenant's
            ("other", "eve@shared.example"),
            ("no_reference", "fay@crumb-labs.example"),
            ("bakery_co", None),
        ],
        "tenant_id string, email string",
    )
    out = {(r.tenant_id, r.email): r for r in company_by_domain(frame, "email", companies).collect()}
    crumb = out[("bakery_co", "ann@crumb-labs.example")]
    assert (crumb.email_domain, crumb.company_name, crumb.industry, crumb.company_employees) == (
        "crumb-labs.example",
        "A Duplicate",  # a domain listed twice keeps its first company in sort order
        "Food",
        99,
    )
    oven = out[("bakery_co", "bob@oven-works.example")]
    assert (oven.company_name, oven.company_employees) == ("Oven Works", None)
    gmail = out[("bakery_co", "cat@gmail.com")]
    assert gmail.is_free_mail and gmail.company_name is None  # free mail is never a company
    assert out[("bakery_co", "dan@shared.example")].company_name is None
    assert out[("other", "eve@shared.example")].company_name == "Other Co"
    assert out[("no_reference", "fay@crumb-labs.example")].company_name is None
    assert out[("bakery_co", None)].email_domain is None and out[("bakery_co", None)].company_name is None
    assert not out[("bakery_co", "bob@oven-works.example")].is_free_mail


@pytest.mark.parametrize(
    "csv_text, message",
    [
        (b"domain,company\nx.example,X\n", "missing column(s) industry, employees"),
        (b"domain,company,industry,employees\nx.example,X,Food,many\n", "line 2: employees must be a whole number"),
    ],
)
def test_a_malformed_company_reference_is_a_clear_error(csv_text, message):
    with pytest.raises(CompanyReferenceError, match=re.escape(f"reference/t/company_domains.csv: {message}")):
        parse_company_reference("t", csv_text)


def test_to_usd_uses_the_days_rate(spark):
    orders = spark.createDataFrame(
        [
            (date(2026, 1, 5), "EUR", Decimal("92.00")),
            (date(2026, 1, 5), "USD", Decimal("10.00")),
            (date(2026, 1, 6), "EUR", Decimal("92.00")),
        ],
        "event_date date, currency string, total decimal(18,2)",
    )
    rates = spark.createDataFrame(
        [(date(2026, 1, 5), "EUR", 0.92), (date(2026, 1, 5), "EUR", 0.92)],
        "event_date date, currency string, rate double",
    )
    out = sorted(
        (str(r.event_date), r.currency, r.total_usd)
        for r in to_usd(orders, rates, "total", "currency", "total_usd").collect()
    )
    assert out == [
        ("2026-01-05", "EUR", Decimal("100.00")),
        ("2026-01-05", "USD", Decimal("10.00")),
        ("2026-01-06", "EUR", None),
    ]


def raw_records(spark, table: str, records: list[dict]):
    """Records read exactly as the curated asset reads raw files (the spec's schema over JSON)."""
    frame = spark.read.schema(BY_TABLE[table].read_schema).json(
        spark.sparkContext.parallelize([json.dumps(r) for r in records])
    )
    return with_test_lineage(frame)


@pytest.mark.parametrize(
    "table, bad, good, rule",
    [
        (
            "shopify_customers",
            {"id": 1, "email": "not-an-email", "updated_at": "2026-01-05T00:00:00Z"},
            {"id": 2, "email": "ok@x.com", "updated_at": "2026-01-05T00:00:00Z"},
            "email_format",
        ),
        (
            "orders",
            {"id": 1, "created_at": "2026-01-05T00:00:00Z", "currency": "USD", "total_price": "0.00"},
            {"id": 2, "created_at": "2026-01-05T00:00:00Z", "currency": "USD", "total_price": "5.00"},
            "order_total_positive",
        ),
        (
            "orders",
            {"id": 1, "created_at": "2019-12-31T23:00:00Z", "currency": "USD", "total_price": "5.00"},
            {"id": 2, "created_at": "2026-01-05T00:00:00Z", "currency": "USD", "total_price": "5.00"},
            "order_date_min",
        ),
        (
            "events",
            {"type": "track", "timestamp": "2026-01-05T00:00:00Z", "user_id": "u"},
            {"message_id": "m", "type": "track", "timestamp": "2026-01-05T00:00:00Z", "user_id": "u"},
            "required_message_id_event_ts",
        ),
        (
            "payments",
            {"id": "ch_1", "amount": -500, "currency": "usd", "created": 1767657300},
            {"id": "ch_2", "amount": 500, "currency": "usd", "created": 1767657300},
            "amount_positive",
        ),
        (
            "products",
            {"id": "p-one", "title": "x", "updated_at": "2026-01-05T00:00:00Z"},
            {"id": 2, "title": "y", "updated_at": "2026-01-05T00:00:00Z"},
            "typed_fields",
        ),
    ],
)
def test_critical_rules_dead_letter_with_reason(spark, table, bad, good, rule):
    spec = BY_TABLE[table]
    fx = spark.createDataFrame([(date(2026, 1, 5), "EUR", 0.9)], "event_date date, currency string, rate double")
    ruled = curate(spec, raw_records(spark, table, [bad, good]), fx, None)
    curated, dead = split(spec, ruled, TEST_LINEAGE)
    assert curated.count() == 1
    (letter,) = dead.collect()
    assert letter.rule == rule and letter.table == table and rule in letter.reason
    assert (letter._source_file, letter._run_id) == ("f.ndjson.gz", "run")
    record = json.loads(letter.record)  # the source record, whole
    assert all(str(record[field]) == str(value) for field, value in bad.items())
    assert (
        ruled.where(F.size("_critical") == 0).where(F.col("_raw").isNotNull()).count() == 0
    )  # kept for dead letters only
    stats = partition_stats(spec, ruled)["2026-01-05"]
    assert (stats.rows_in, stats.dead_lettered, stats.critical[rule]) == (2, 1, 1)


def order_dates_kept(spark, days_by_tenant: dict[str, list[str]]) -> dict[tuple[str, str], bool]:
    """Per (tenant, order day): whether an order of that day passes `order_date_min` (every other rule holds)."""
    records = [
        (tenant, {"id": i, "created_at": f"{day}T12:00:00Z", "currency": "USD", "total_price": "5.00"})
        for i, (tenant, day) in enumerate((t, d) for t, days in days_by_tenant.items() for d in days)
    ]
    frame = spark.read.schema(BY_TABLE["orders"].read_schema).json(
        spark.sparkContext.parallelize([json.dumps(r) for _, r in records])
    )
    tenant_of = spark.createDataFrame([(r["id"], t) for t, r in records], "id_ string, tenant string")
    frame = with_test_lineage(frame).drop("tenant_id").join(tenant_of, F.col("id") == F.col("id_"))
    frame = frame.withColumnRenamed("tenant", "tenant_id").drop("id_")
    fx = spark.createDataFrame([(date(2026, 1, 5), "EUR", 0.9)], "event_date date, currency string, rate double")
    ruled = curate(BY_TABLE["orders"], frame, fx, None)
    return {
        (row.tenant_id, str(row.ordered_at.date())): "order_date_min" not in row._critical
        for row in ruled.select("tenant_id", "ordered_at", "_critical").collect()
    }


def test_order_date_bound_follows_the_partitions_start(spark, monkeypatch):
    """A tenant whose history starts in 2018 (CDP_START_DATE moved back) keeps its orders; an order
    far before the first partition (a typo'd year) is still dead-lettered."""
    monkeypatch.setenv("CDP_START_DATE", "2018-03-01")
    monkeypatch.setenv("CDP_LATE_DAYS", "3")
    kept = order_dates_kept(spark, {"t": ["2018-02-26", "2018-03-01", "2019-07-04", "2018-02-25", "1999-03-01"]})
    assert kept == {
        ("t", "2018-02-26"): True,  # the late-data window before the first partition
        ("t", "2018-03-01"): True,
        ("t", "2019-07-04"): True,
        ("t", "2018-02-25"): False,
        ("t", "1999-03-01"): False,
    }


def test_order_date_bound_per_tenant(spark, monkeypatch, tmp_path):
    bounds = tmp_path / "date_bounds.yaml"
    bounds.write_text('default: {earliest: "2016-01-01"}\nold_shop: {earliest: "2009-01-01"}\n')
    monkeypatch.setenv("CDP_DATE_BOUNDS_FILE", str(bounds))
    kept = order_dates_kept(spark, {"old_shop": ["2010-05-01", "2008-12-31"], "new_shop": ["2010-05-02", "2016-01-01"]})
    assert kept == {
        ("old_shop", "2010-05-01"): True,
        ("old_shop", "2008-12-31"): False,
        ("new_shop", "2010-05-02"): False,
        ("new_shop", "2016-01-01"): True,
    }
    bounds.write_text("default: {latest: 2030-01-01}\n")
    with pytest.raises(ValueError, match="at most the key 'earliest'"):
        order_dates_kept(spark, {"t": ["2026-01-05"]})


# Operators Spark never compiles into a stage's generated code, and scans of the test's in-memory rows.
UNCOMPILED_OPERATORS = re.compile(
    r"Exchange|Window|Scan|SerializeFromObject|MapPartitions|DeserializeToObject|ExternalRDD"
)


@pytest.mark.parametrize("table", sorted(BY_TABLE))
def test_typing_and_rules_run_in_generated_code(spark, table):
    """No projection or filter of the ruled rows falls out of Spark's whole-stage generated code (a
    higher-order function such as `array_compact` in one did: that projection ran apart, copying
    every row again)."""
    spec = BY_TABLE[table]
    fx = spark.createDataFrame([(date(2026, 1, 5), "EUR", 0.9)], "event_date date, currency string, rate double")
    ruled = curate(spec, raw_records(spark, table, [{}]), fx, None)
    adaptive = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")  # so that the plan shows its stages (`*(n)`)
    try:
        plan = ruled._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", adaptive)
    operators = [
        re.sub(r"^[\s:+-]*", "", line).split(" [")[0]
        for line in plan.splitlines()
        if re.match(r"^[\s:+-]*[*A-Z]", line)
    ]
    assert operators and not [o for o in operators if not o.startswith("*(") and not UNCOMPILED_OPERATORS.search(o)]


def test_warning_rules_count_but_keep_rows(spark):
    raw = raw_records(
        spark,
        "accounts",
        [{"Id": "001a", "Name": "A", "AnnualRevenue": -5, "LastModifiedDate": "2026-01-05T00:00:00.000+0000"}],
    )
    ruled = curate(BY_TABLE["accounts"], raw)
    curated, dead = split(BY_TABLE["accounts"], ruled, TEST_LINEAGE)
    (row,) = curated.collect()
    assert dead.count() == 0 and row.quality_warnings == ["revenue_in_range"]


def test_unique_email_and_customer_exists_flags(spark):
    raw = raw_records(
        spark,
        "shopify_customers",
        [
            {"id": 1, "email": "same@x.com", "updated_at": "2026-01-05T01:00:00Z"},
            {"id": 2, "email": "SAME@x.com ", "updated_at": "2026-01-05T02:00:00Z"},
            {"id": 3, "email": "solo@x.com", "updated_at": "2026-01-05T03:00:00Z"},
        ],
    )
    ruled = curate(BY_TABLE["shopify_customers"], raw)
    warned = {r.customer_id: r._warnings for r in ruled.collect()}
    assert "email_unique" in warned[1] and "email_unique" in warned[2] and "email_unique" not in warned[3]

    known = spark.createDataFrame([("t", 1)], "tenant_id string, customer_id long")
    frame = spark.createDataFrame([("t", 1, True), ("t", 9, True)], "tenant_id string, customer_id long, ok boolean")
    flags = {r.customer_id: r._customer_known for r in flag_known_customer(frame, known).collect()}
    assert flags == {1: True, 9: False}
    applied = apply_rules(
        flag_known_customer(frame, known), [r for r in BY_TABLE["orders"].rules if r.name == "customer_exists"]
    )
    assert {r.customer_id: r._warnings for r in applied.collect()} == {1: [], 9: ["customer_exists"]}


def test_an_email_owned_on_an_earlier_day_is_shared_and_a_later_owner_does_not_count(spark):
    rows = "tenant_id string, event_date date, customer_id long, email string"
    today = spark.createDataFrame(
        [
            ("t", date(2026, 1, 5), 1, "a@x.com"),
            ("t", date(2026, 1, 5), 2, "b@x.com"),
            ("t", date(2026, 1, 5), 3, "c@x.com"),
            ("t", date(2026, 1, 5), 4, None),
        ],
        rows,
    )
    earlier = spark.createDataFrame(
        [
            ("t", date(2026, 1, 3), 7, "a@x.com"),
            ("t", date(2026, 1, 4), 2, "b@x.com"),
            ("u", date(2026, 1, 4), 8, "c@x.com"),
            ("t", date(2026, 1, 6), 9, "c@x.com"),
        ],
        rows,
    )
    flags = {r.customer_id: r._email_shared for r in flag_shared_email(today, "customer_id", earlier).collect()}
    assert flags == {1: True, 2: False, 3: False, 4: False}


def test_schema_errors_name_nulls_types_and_missing_columns(spark):
    schema = pandera_schema(BY_TABLE["fx_rates"])  # required: the key (base, currency) and the lineage columns
    good = spark.createDataFrame(
        [(date(2026, 1, 5), "USD", "EUR", 0.9, "t", date(2026, 1, 5), "f", "r")],
        "rate_date date, base string, currency string, rate double, tenant_id string, "
        "event_date date, _source_file string, _run_id string",
    )
    assert schema_errors(schema, good) == {}
    bad = (
        good.union(good.withColumn("currency", F.lit(None)).withColumn("_run_id", F.lit(None)))
        .withColumn("rate", F.col("rate").cast("string"))
        .drop("_source_file")
    )
    errors = schema_errors(schema, bad)["SCHEMA"]
    assert {e["column"]: e["error"] for e in errors["SERIES_CONTAINS_NULLS"]} == {
        "currency": "non-nullable column 'currency' contains 1 nulls",
        "_run_id": "non-nullable column '_run_id' contains 1 nulls",
    }
    assert [e["column"] for e in errors["WRONG_DATATYPE"]] == ["rate"]
    assert [e["column"] for e in errors["COLUMN_NOT_IN_DATAFRAME"]] == ["_source_file"]


def test_jvm_phones_read_like_python_phonenumbers(spark):
    """The JVM's libphonenumber (cdp_e164) gives what Python's phonenumbers gives, on the generator's
    phone formats in every country it uses, with and without the record's country, and on junk."""
    rng = random.Random(7)
    people = build_population(seed=7, tenant="t", customers=400, days=3).people
    cases = [(phone_variant(rng, p), p.country) for p in people] + [(phone_variant(rng, p), None) for p in people[:100]]
    cases += [
        ("12", "US"),
        ("+999 123", None),
        ("call me", "GB"),
        ("", "DE"),
        ("0044 20 7946 0958", "GB"),
        ("+1 415 555 0123 ext. 9", "US"),
    ]

    frame = spark.createDataFrame(
        [(i, raw, region) for i, (raw, region) in enumerate(cases)], "i int, raw string, region string"
    )
    jvm = {r.i: r.e164 for r in frame.select("i", normalise.phone("raw", "region").alias("e164")).collect()}
    # The activation zone's Python normaliser (phonenumbers; E.164 without the '+') is the oracle.
    assert [jvm[i] and jvm[i].removeprefix("+") for i in range(len(cases))] == [
        normalise_phone(raw, region) for raw, region in cases
    ]
    assert all(value is None or value.startswith("+") for value in jvm.values())
    assert sum(value is not None for value in jvm.values()) > len(people) * 0.8


def test_jvm_phone_library_is_the_version_python_uses():
    assert importlib.metadata.version("phonenumbers") == LIBPHONENUMBER_VERSION
