"""Generic curated tables (streams registered with `cdp schemas import`), on real Spark, Delta and
PostgreSQL: one row per key across every day, its newest version, whether the days run in one
run, day by day, in reverse or again; the warehouse table follows, older days included; fields the
import marks personal are masked for a tenant analyst without the PII grant."""

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from dagster import AssetSelection, Definitions, define_asset_job
from psycopg import sql

from cdp_assets.curated import curated_tables_asset
from cdp_assets.raw import raw_stream_asset
from cdp_assets.warehouse import warehouse_asset
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SCHEMA_DIR, SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import curated_path
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from cdp_resources.warehouse_security import PIPELINE_ROLE
from cdp_transform.generic import generic_entity
from cdp_warehouse.tables import curated_table
from partitions import daily_partitions, range_tags
from tests.conftest import TEST_SPARK_CONFIG, assert_same_rows, cdp

TENANT, D1, D2 = "initech", "2026-11-01", "2026-11-02"
STRING, TEXT = {"type": ["null", "string"]}, {"type": ["string"]}
CATALOG = {
    "streams": [
        {
            "tap_stream_id": "contacts",
            "stream": "contacts",
            "key_properties": ["id"],
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": ["integer"]},
                    "EmailAddress": STRING,
                    "mobile": STRING,
                    "firstname": STRING,
                    "nickname": STRING,
                    "email_marketing_consent": STRING,
                    "tags": STRING,
                    "updated_at": {**TEXT, "format": "date-time"},
                },
            },
            "metadata": [],
        }
    ]
}


def contact(i: int, updated_at: str, tags: str) -> dict:
    return {
        "id": i,
        "EmailAddress": f"person{i}@example.com",
        "mobile": f"+1555000{i:04d}",
        "firstname": f"First{i}",
        "nickname": f"nick{i}",
        "email_marketing_consent": "granted",
        "tags": tags,
        "updated_at": updated_at,
    }


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """zoho/contacts registered by `cdp schemas import` (personal fields proposed by name, one
    added by hand), and a raw zone of two deliveries: day 1's contacts 1-4, then a day later
    contact 1 updated on day 2, contact 5 new, contact 2 delivered again and an older version of 3."""
    root = tmp_path_factory.mktemp("generic")
    (root / "catalog.json").write_text(json.dumps(CATALOG))
    arguments = ["schemas", "import", str(root / "catalog.json"), "--provider", "zoho", "--event-time"]
    arguments += ["contacts=updated_at", "--pii", "contacts=nickname", "--schema-dir", str(root / "schemas")]
    output = cdp(*arguments)
    assert output.returncode == 0, output.stderr
    registry = SchemaRegistry(SCHEMA_DIR, root / "schemas")
    lake = LakeResource(base_uri=str(root / "raw"))
    deliveries = [
        (datetime(2026, 11, 1, 23, tzinfo=UTC), [contact(i, f"{D1}T10:00:00Z", "v1") for i in range(1, 5)]),
        (
            datetime(2026, 11, 2, 23, tzinfo=UTC),
            [
                contact(1, f"{D2}T09:00:00Z", "v2"),
                contact(5, f"{D2}T09:30:00Z", "v1"),
                contact(2, f"{D1}T10:00:00Z", "v1"),
                contact(3, f"{D1}T08:00:00Z", "older"),
            ],
        ),
    ]
    for at, records in deliveries:
        writer = RawBatchWriter(lake, registry, TENANT, "zoho", "test", clock=lambda at=at: at)
        assert all(writer.add("contacts", record) for record in records)
        writer.flush()
    return registry, lake, output.stdout


def test_the_import_marks_personal_fields_by_name_and_by_hand(registered):
    registry, _, printed = registered
    schema = registry.latest("zoho", "contacts").schema
    marked = sorted(name for name, node in schema["properties"].items() if node.get("x-cdp-pii"))
    assert marked == ["EmailAddress", "firstname", "mobile", "nickname"]  # not the consent status
    assert "personal data (x-cdp-pii, masked for tenant roles without the PII grant): EmailAddress, mobile, " in (
        printed
    )
    assert "proposed by name: EmailAddress, mobile, firstname;" in printed
    assert "no running `cdp dev` found: reload the code location 'cdp'" in printed
    assert generic_entity(registry.latest("zoho", "contacts")).pii == (
        "emailaddress",
        "mobile",
        "firstname",
        "nickname",
    )


def pipeline_database(postgres, name: str) -> WarehouseResource:
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(PIPELINE_ROLE)))
    return WarehouseResource(url=postgres.url(name, PIPELINE_ROLE))


class Lake:
    """A copy of the raw zone with its own warehouse database, and runs of raw → generic curated →
    warehouse over it."""

    def __init__(self, registered, root: Path, postgres, name: str, instance):
        registry, raw, _ = registered
        shutil.copytree(raw.base_uri, root / name)
        self.lake, self.instance = LakeResource(base_uri=str(root / name)), instance
        self.warehouse = pipeline_database(postgres, f"generic_{name}")
        self.spec = generic_entity(registry.latest("zoho", "contacts"))
        assets = [
            raw_stream_asset(registry.latest("zoho", "contacts")),
            curated_tables_asset([self.spec]),
            warehouse_asset(curated_table(self.spec)),
        ]
        job = define_asset_job("generic", selection=AssetSelection.assets(*assets), partitions_def=daily_partitions)
        self.defs = Definitions(
            assets=assets,
            jobs=[job],
            resources={
                "lake": self.lake,
                "warehouse": self.warehouse,
                "spark": SparkDeltaResource(spark_config=TEST_SPARK_CONFIG),
            },
        )

    def run(self, first: str, last: str) -> dict:
        """One run of days first..last; the curated table's metadata (its checks passed)."""
        result = self.defs.resolve_job_def("generic").execute_in_process(
            instance=self.instance, tags=range_tags(first, last)
        )
        assert result.success
        checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"pandera_schema": True, "reconciles_with_raw": True}, checks
        return {k: v.value for k, v in result.asset_materializations_for_node("curated_tables")[0].metadata.items()}

    def curated(self, spark):
        return spark.read.format("delta").load(self.lake.spark_path(curated_path(self.spec.table)))

    def curated_rows(self, spark) -> dict[int, tuple]:
        rows = self.curated(spark).select("id", "tags", "event_date").collect()
        assert len(rows) == len({row.id for row in rows}), "a key twice in the curated table"
        return {row.id: (row.tags, str(row.event_date)) for row in rows}

    def warehouse_rows(self) -> dict[int, tuple]:
        with self.warehouse.connect() as conn:
            rows = conn.execute("SELECT id, tags, event_date::text FROM raw_cdp.zoho_contacts").fetchall()
        assert len(rows) == len({row[0] for row in rows}), "a key twice in the warehouse table"
        return {row[0]: row[1:] for row in rows}


NEWEST = {
    1: ("v2", D2),  # updated a day later: once, on its new day
    2: ("v1", D1),
    3: ("v1", D1),  # the older version delivered later does not win
    4: ("v1", D1),
    5: ("v1", D2),
}


@pytest.fixture(scope="module")
def day_by_day(registered, tmp_path_factory, postgres, dagster_instance, spark):
    """Day 1, then day 2, then day 1 again, each run with its warehouse load; the curated
    metadata of each run and the rows after each."""
    lake = Lake(registered, tmp_path_factory.mktemp("lakes"), postgres, "incremental", dagster_instance)
    steps = []
    for day in (D1, D2, D1):
        metadata = lake.run(day, day)
        steps.append((metadata, lake.curated_rows(spark), lake.warehouse_rows()))
    return lake, steps


def test_a_key_updated_on_a_later_day_is_kept_once_and_newest_in_curated_and_warehouse(day_by_day):
    _, ((first, rows_1, warehouse_1), (second, rows_2, warehouse_2), _) = day_by_day
    assert rows_1 == warehouse_1 == {i: ("v1", D1) for i in (1, 2, 3, 4)}
    assert rows_2 == warehouse_2 == NEWEST
    # The raw zone holds both deliveries: day 1's redelivery of 2 and older version of 3 are duplicates.
    assert first["duplicates_removed"] == 2 and first["superseded"] == 0
    # Day 2's run removed contact 1's day-1 version, and its load reloaded day 1.
    assert second["superseded_in_other_days"] == {D1: 1} and second["dagster/row_count"] == 2


def test_rerunning_the_older_day_does_not_bring_the_old_version_back(day_by_day):
    _, (*_, (again, rows, warehouse)) = day_by_day
    assert rows == warehouse == NEWEST
    # Day 1's six raw records: three curated, a redelivery and an older version of 3 (duplicates),
    # and contact 1's day-1 version, superseded: the reconciliation holds (checked in `run`).
    assert again["rows_in"] == 6 and again["dagster/row_count"] == 3
    assert again["duplicates_removed"] == 3 and again["superseded"] == 1
    assert again["per_day"][D1] == {"rows_in": 6, "duplicates": 3, "superseded": 1, "dead_lettered": 0, "curated": 3}


def test_one_run_over_both_days_and_days_in_reverse_equal_day_by_day(
    registered, day_by_day, tmp_path_factory, postgres, dagster_instance, spark
):
    incremental, _ = day_by_day
    root = tmp_path_factory.mktemp("other_lakes")
    historic = Lake(registered, root, postgres, "historic", dagster_instance)
    metadata = historic.run(D1, D2)
    assert metadata["superseded"] == 1 and metadata["superseded_in_other_days"] == {}
    reverse = Lake(registered, root, postgres, "reverse", dagster_instance)
    reverse.run(D2, D2)
    reverse.run(D1, D1)
    for other in (historic, reverse):
        assert other.curated_rows(spark) == other.warehouse_rows() == NEWEST
        assert_same_rows(incremental.curated(spark), other.curated(spark))


def test_personal_fields_of_a_generic_table_are_masked_for_an_analyst_without_the_pii_grant(day_by_day, postgres):
    database = "generic_incremental"  # day_by_day's warehouse
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{TENANT}_analyst")))
    admin = postgres.url(database)
    added = cdp("tenants", "add", TENANT, "--url", admin)
    assert added.returncode == 0, added.stderr
    password = re.search(r"password \(shown once\): (\S+)", added.stdout).group(1)
    columns = "id, emailaddress, mobile, firstname, nickname, email_marketing_consent, tags"
    query = f"SELECT {columns} FROM tenant_views.raw_cdp__zoho_contacts WHERE id = 1"

    def as_analyst(statement: str):
        with psycopg.connect(postgres.url(database, f"{TENANT}_analyst"), password=password) as conn:
            return conn.execute(statement).fetchall()

    try:
        assert as_analyst(query) == [(1, "***", "***", "***", "***", "granted", "v2")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_analyst("SELECT emailaddress FROM raw_cdp.zoho_contacts")
        assert as_analyst("SELECT id, email_marketing_consent FROM raw_cdp.zoho_contacts WHERE id = 1") == [
            (1, "granted")
        ]
        assert cdp("tenants", "grant", TENANT, "--pii", "--url", admin).returncode == 0
        assert as_analyst(query) == [(1, "person1@example.com", "+15550000001", "First1", "nick1", "granted", "v2")]
        assert as_analyst("SELECT emailaddress FROM raw_cdp.zoho_contacts WHERE id = 1") == [("person1@example.com",)]
    finally:
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{TENANT}_analyst")))
