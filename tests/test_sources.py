"""Managed sources: the sources file, taps installed by the platform, and runs of real taps.

`pipelinewise-tap-postgres` from PyPI (installed by the platform's own code) reads a table of a
scratch database in the tests' PostgreSQL, shaped like Shopify customers, with INCREMENTAL
replication on `updated_at`; a tiny tap of this file (a local package, installed the same way)
hangs past its timeout. The source's login is refused with a wrong password because the tests'
cluster requires SCRAM for the tap's role (an extra pg_hba.conf line, removed afterwards).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import psycopg
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions, build_schedule_context, define_asset_job

from cdp_assets.curated import curated_tables_asset
from cdp_assets.raw import raw_stream_asset
from cdp_assets.sources import source_definitions
from cdp_assets.warehouse import warehouse_asset
from cdp_cli.main import main
from cdp_ingest.registry import SCHEMA_DIR, SchemaRegistry
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import decode_ndjson_gz
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from cdp_sources.declarations import (
    SecretReferenceError,
    Source,
    SourcesFile,
    SourcesFileError,
    expand_config,
    load_sources,
)
from cdp_sources.runner import SourcePaused, TapFailed, TapTimeout, run_source
from cdp_sources.state import read_pause, source_session
from cdp_sources.taps import INSTALLED_MARKER, TapInstallError, ensure_tap, taps_dir, venv_name
from cdp_transform.generic import generic_entity
from cdp_warehouse.tables import curated_table
from partitions import daily_partitions, range_tags
from tests.conftest import TEST_SPARK_CONFIG, TEST_STATE

ROOT = Path(__file__).resolve().parent.parent
TAP_POSTGRES = "pipelinewise-tap-postgres==1.8.4"
# Its pin psycopg2-binary==2.9.3 has no wheel for Python 3.11+: a later 2.9 release has.
TAP_POSTGRES_OVERRIDES = ["psycopg2-binary==2.9.10"]
READER, PASSWORD = "crm_reader", "right-horse-battery"


# --- the sources file ---------------------------------------------------------------------------


def documented_example() -> str:
    text = (ROOT / "docs" / "ingestion.md").read_text()
    section = text[text.index("## Managed sources") :]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


def test_the_documented_example_is_a_valid_sources_file(tmp_path):
    sources = {source.key: source for source in load_sources(write(tmp_path, documented_example()))}
    assert set(sources) == {"acme_corp/crm_db", "globex/shop_files"}
    crm = sources["acme_corp/crm_db"]
    assert (crm.provider, crm.timeout_minutes, crm.retries, crm.schedule) == ("shopify", 30, 2, "0 * * * *")
    assert crm.streams["public-customers"].replication_key == "updated_at"
    assert crm.config["user"] == "${ACME_CRM_USER}"  # declared, not expanded
    assert crm.config["password"] == {"file": "/run/secrets/acme_crm_password"}
    assert crm.auth_failure_patterns == ["password authentication failed", r"(?i)no pg_hba\.conf entry"]
    assert sources["globex/shop_files"].timeout_minutes == 30  # the default
    assert sources["globex/shop_files"].provider == "shop_files"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("tap: pipelinewise-tap-postgres==1.8.4", "tap: pipelinewise-tap-postgres>=1.8"), "not pinned to one version"),
        (('schedule: "0 * * * *"', 'schedule: "every hour"'), "is not a cron schedule"),
        (("to: shopify/customers", "to: customers"), "is not a registry stream 'provider/stream'"),
        (("replication_key: updated_at", "replication_key: null"), "INCREMENTAL replication needs a replication_key"),
        (("timeout_minutes: 30", "timeout_minutes: 0"), "greater than 0"),
        (("retries: 2", "retrys: 2"), "Extra inputs are not permitted"),
        (("  globex:", "  Globex:"), "tenant name 'Globex' must match"),
        (
            ("to: shop_files/orders", "to: shop_files/orders\n          contacts: {to: salesforce/contacts}"),
            "several providers",
        ),
    ],
)
def test_a_bad_sources_file_is_refused_naming_the_place(tmp_path, change, message):
    text = documented_example()
    assert change[0] in text
    with pytest.raises(SourcesFileError) as refused:
        load_sources(write(tmp_path, text.replace(change[0], change[1], 1)))
    assert message in str(refused.value)
    assert "tenants." in str(refused.value) or "(top)" in str(refused.value)


def test_no_sources_file_means_no_sources(tmp_path):
    assert load_sources(tmp_path / "absent.yaml") == []


def test_secret_references_expand_at_run_time_and_errors_never_show_a_secret(tmp_path, monkeypatch):
    (tmp_path / "key").write_text("file-secret\n")
    monkeypatch.setenv("CDP_TEST_SECRET", "env-secret")
    config = {"password": "${CDP_TEST_SECRET}", "dsn": "u:${CDP_TEST_SECRET}@h", "key": {"file": str(tmp_path / "key")}}
    assert expand_config(config) == {"password": "env-secret", "dsn": "u:env-secret@h", "key": "file-secret"}
    monkeypatch.delenv("CDP_TEST_SECRET")
    with pytest.raises(
        SecretReferenceError, match=r"config\.password: environment variable CDP_TEST_SECRET is not set"
    ):
        expand_config(config)
    with pytest.raises(SecretReferenceError, match="cannot read secret file"):
        expand_config({"key": {"file": str(tmp_path / "missing")}})


# --- real parts ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm(postgres) -> str:
    """A scratch database `crm` with `public.customers` (Shopify-customer shaped), readable by a role
    that must log in with its password (SCRAM); yields the port."""
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS crm WITH (FORCE)")
        conn.execute("CREATE DATABASE crm")
        conn.execute(f"DROP ROLE IF EXISTS {READER}")
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{PASSWORD}'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        original = hba.read_text()
        # First match wins: this line puts the tap's role (only) behind a password.
        with open(hba, "w") as rewritten:  # in place, so the file keeps its owner
            rewritten.write(f"host crm {READER} 127.0.0.1/32 scram-sha-256\n{original}")
        conn.execute("SELECT pg_reload_conf()")
    with psycopg.connect(postgres.url("crm"), autocommit=True) as conn:
        conn.execute("""CREATE TABLE public.customers (
            id integer PRIMARY KEY, email text, first_name text, last_name text, phone text,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, accepts_marketing boolean, tags text)""")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}")
    yield str(postgres.port)
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        with open(hba, "w") as restored:
            restored.write(original)
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture
def state_db(postgres, request) -> str:
    """A fresh database for the sources' state (cdp_sources schema) of one test."""
    name = f"sources_{request.node.name.lower()}"[:60].replace("[", "_").replace("]", "_").replace("-", "_")
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.url(name)


def reset_customers(postgres, rows: int, start: str = "2026-11-01") -> None:
    """`rows` customers, one second apart in `updated_at` (so each bookmark is exact)."""
    with psycopg.connect(postgres.url("crm"), autocommit=True) as conn:
        conn.execute("TRUNCATE public.customers")
        conn.execute(
            """INSERT INTO public.customers
               SELECT i, 'person' || i || '@example.com', 'First' || i, 'Last' || i, '+1555' || lpad(i::text, 7, '0'),
                      %s::timestamptz + i * interval '1 second', %s::timestamptz + i * interval '1 second',
                      i %% 2 = 0, 'vip'
               FROM generate_series(1, %s) AS i""",
            (start, start, rows),
        )


def sources_yaml(port: str, tenants: dict[str, dict]) -> str:
    """A sources file with one tap-postgres source `crm` per tenant; `tenants` overrides fields per tenant."""
    document = {"tenants": {}}
    for tenant, overrides in tenants.items():
        source = {
            "tap": TAP_POSTGRES,
            "overrides": TAP_POSTGRES_OVERRIDES,
            "config": {"host": "127.0.0.1", "port": int(port), "user": READER, "password": "${CDP_TEST_CRM_PASSWORD}",
                       "dbname": "crm", "filter_schemas": "public"},
            "streams": {"public-customers": {"to": "shopify/customers", "replication_method": "INCREMENTAL",
                                             "replication_key": "updated_at"}},
            "schedule": "*/15 * * * *",
            "retries": 2,
            "retry_backoff_seconds": 20,
        }  # fmt: skip
        source.update(overrides)
        document["tenants"][tenant] = {"sources": {"crm": source}}
    return json.dumps(document)  # JSON is YAML


def raw_customers(
    lake: LakeResource, tenant: str, keys: set[str] | None = None, provider: str = "shopify"
) -> list[dict]:
    """Every customer record landed for `tenant` (in the files `keys`, when given)."""
    return [
        record
        for obj in lake.list(f"raw/{tenant}/{provider}/customers/")
        if keys is None or obj.key in keys
        for record in decode_ndjson_gz(lake.read_bytes(obj.key))
    ]


def raw_keys(lake: LakeResource, tenant: str, provider: str = "shopify") -> set[str]:
    return {obj.key for obj in lake.list(f"raw/{tenant}/{provider}/customers/")}


def materialize(defs: Definitions, job: str, instance: DagsterInstance):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)


def failure_of(result) -> tuple[str, dict]:
    data = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    return data.description, {key: value.value for key, value in data.metadata.items()}


def test_postgres_sources_in_dagster_incremental_and_paused_on_a_wrong_password(
    crm, postgres, state_db, tmp_path, monkeypatch, dagster_instance
):
    """The jobs the UI and schedules run: acme's tap-postgres source lands the table, then only new
    and updated rows; globex's source with a wrong password is paused with the reason, not retried,
    and runs again once its config changes, while acme's keeps running; initech's tap package
    cannot be installed, which fails its source alone."""
    reset_customers(postgres, 300)
    monkeypatch.setenv("CDP_TEST_CRM_PASSWORD", PASSWORD)
    monkeypatch.setenv("CDP_TEST_GLOBEX_PASSWORD", "wrong-password")
    path = write(tmp_path, sources_yaml(crm, {"acme_corp": {}, "globex": {"config": {
        "host": "127.0.0.1", "port": int(crm), "user": READER, "password": "${CDP_TEST_GLOBEX_PASSWORD}",
        "dbname": "crm", "filter_schemas": "public"}}, "initech": {"tap": "pipelinewise-tap-postgres==0.0.1"}}))  # fmt: skip
    built = source_definitions(load_sources(path))
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    defs = Definitions(
        assets=built.assets,
        jobs=built.jobs,
        schedules=built.schedules,
        resources={"lake": lake, "warehouse": WarehouseResource(url=state_db)},
    )
    assets = {a.key: a for a in built.assets}
    acme = assets[AssetKey(["sources", "acme_corp", "crm"])]
    assert acme.group_names_by_key[acme.key] == "sources" and "public-customers" in acme.descriptions_by_key[acme.key]
    schedule = defs.resolve_schedule_def("source__acme_corp__crm_schedule")
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.job_name == "source__acme_corp__crm"
    # As a context manager: its resources open a second instance that sets Dagster's current
    # defs-state storage, and only leaving the context restores the session's (else a later
    # `resolve_job_def` can meet the collected instance: "undefined DagsterInstance weakref").
    with build_schedule_context(
        instance=dagster_instance, resources={"warehouse": WarehouseResource(url=state_db)}
    ) as tick:
        assert schedule.evaluate_tick(tick).run_requests

    first = materialize(defs, "source__acme_corp__crm", dagster_instance)
    assert first.success
    metadata = {
        k: v.value for k, v in first.asset_materializations_for_node("sources__acme_corp__crm")[0].metadata.items()
    }
    assert metadata["records_landed/customers"] == metadata["records_received/customers"] == 300
    assert metadata["bytes/customers"] > 300 * 100 and metadata["tap_exit_code"] == 0 and metadata["dead_letters"] == 0
    assert metadata["bookmark"]["bookmarks"]["public-customers"]["replication_key_value"].startswith(
        "2026-11-01T00:05:00"
    )
    assert not re.search(r"person\d+@example|\+1555\d", json.dumps({k: str(v) for k, v in metadata.items()}))
    assert sorted(r["id"] for r in raw_customers(lake, "acme_corp")) == list(range(1, 301))

    # New rows and updated rows; the bookmark row itself comes again (tap-postgres reads `>=` it).
    with psycopg.connect(postgres.url("crm"), autocommit=True) as conn:
        conn.execute("""INSERT INTO public.customers SELECT i, NULL, NULL, NULL, NULL, now(), now(), false, 'new'
                        FROM generate_series(301, 320) AS i""")
        conn.execute("UPDATE public.customers SET tags = 'updated', updated_at = now() WHERE id IN (5, 50, 150)")
    before = raw_keys(lake, "acme_corp")

    started = time.monotonic()
    refused = materialize(defs, "source__globex__crm", dagster_instance)
    description, failed = failure_of(refused)
    assert not refused.success and time.monotonic() - started < 20  # no retry after the refused login
    assert "paused: authentication failure" in description and "password authentication failed" in description
    assert failed["attempts"] == 1 and "wrong-password" not in description
    assert read_pause(state_db, "globex", "crm").reason.startswith("authentication failure")

    second = materialize(defs, "source__acme_corp__crm", dagster_instance)  # the other tenant runs on
    assert second.success
    new_records = raw_customers(lake, "acme_corp", raw_keys(lake, "acme_corp") - before)
    assert sorted(r["id"] for r in new_records) == sorted([5, 50, 150, 300, *range(301, 321)])
    assert {r["tags"] for r in new_records if r["id"] in (5, 50, 150)} == {"updated"}

    again = materialize(defs, "source__globex__crm", dagster_instance)  # paused: the tap does not run
    description, failed = failure_of(again)
    assert "is paused: authentication failure" in description and failed["attempts"] == 0
    assert raw_keys(lake, "globex") == set()
    skipped = defs.resolve_schedule_def("source__globex__crm_schedule").evaluate_tick(tick)
    assert not skipped.run_requests and "is paused: authentication failure" in skipped.skip_message

    monkeypatch.setenv("CDP_TEST_GLOBEX_PASSWORD", PASSWORD)  # the secret changes: the config does
    assert defs.resolve_schedule_def("source__globex__crm_schedule").evaluate_tick(tick).run_requests
    fixed = materialize(defs, "source__globex__crm", dagster_instance)
    assert fixed.success and len(raw_customers(lake, "globex")) == 320
    assert read_pause(state_db, "globex", "crm") is None

    broken = materialize(defs, "source__initech__crm", dagster_instance)  # a package that cannot install
    assert (
        not broken.success
        and "source initech/crm: cannot install pipelinewise-tap-postgres==0.0.1" in (failure_of(broken)[0])
    )


def tap_processes(name: str) -> list[int]:
    """Pids of this test process's children running `name` (the taps the runner started)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and any(name.encode() in part for part in cmdline[:2]):
            found.append(int(stat.parent.name))
    return found


def kill_the_tap_mid_run(source: Source, lake: LakeResource, state_db: str) -> TapFailed:
    """Runs `source` and kills its tap (kill -9) once a bookmark is saved; the run's failure."""
    outcome = {}

    def run() -> None:
        try:
            outcome["report"] = run_source(source, lake, state_db, max_age_seconds=0.3)
        except TapFailed as failure:
            outcome["failure"] = failure

    runner = threading.Thread(target=run)
    runner.start()
    killed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and runner.is_alive() and killed is None:
        with psycopg.connect(state_db, autocommit=True) as conn:
            made = conn.execute("SELECT to_regclass('cdp_sources.bookmarks')").fetchone()[0]
            has_bookmark = made and conn.execute("SELECT count(*) FROM cdp_sources.bookmarks").fetchone()[0]
        syncing = tap_processes("tap-postgres")
        if has_bookmark and syncing:
            killed = syncing[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    runner.join(timeout=120)
    assert killed, "the tap finished before it could be killed mid-run"
    return outcome["failure"]


def lake_job_defs(built, registry: SchemaRegistry, lake: LakeResource, warehouse: WarehouseResource) -> Definitions:
    """The sources' assets and jobs, and a job of raw → generic curated → warehouse for crm/customers."""
    spec = generic_entity(registry.latest("crm", "customers"))
    assets = [
        raw_stream_asset(registry.latest("crm", "customers")),
        curated_tables_asset([spec]),
        warehouse_asset(curated_table(spec)),
    ]
    lake_job = define_asset_job("crm_lake", selection=AssetSelection.assets(*assets), partitions_def=daily_partitions)
    return Definitions(
        assets=[*built.assets, *assets],
        jobs=[*built.jobs, lake_job],
        resources={"lake": lake, "warehouse": warehouse, "spark": SparkDeltaResource(spark_config=TEST_SPARK_CONFIG)},
    )


def test_a_new_postgres_stream_reaches_the_warehouse_through_a_generic_table(
    crm, postgres, state_db, spark, dagster_instance, tmp_path, monkeypatch, capsys
):
    """`cdp schemas import --source` registers the tap's table as crm/customers (no hand-written
    entity); a run whose tap is killed (kill -9) mid-run, then a rerun, lose nothing; the Dagster
    job lands only new and updated rows; raw → generic curated → warehouse keeps one row per key,
    its latest version, and the curated checks pass. The platform's PostgreSQL (sources' state and
    warehouse tables) is the test's own database."""
    rows = 60_000
    reset_customers(postgres, rows)  # one day: 2026-11-01 00:00:01 … 16:40:00
    monkeypatch.setenv("CDP_TEST_CRM_PASSWORD", PASSWORD)
    monkeypatch.setenv("CDP_SCHEMA_DIR", str(tmp_path / "schemas"))
    text = sources_yaml(crm, {"acme_corp": {"retries": 0}}).replace("shopify/customers", "crm/customers")
    monkeypatch.setenv("CDP_SOURCES_FILE", str(write(tmp_path, text)))
    assert main(["schemas", "import", "--source", "acme_corp/crm"]) == 0
    assert "crm/customers: registered v1 from public-customers (key id; event time updated_at)" in (
        capsys.readouterr().out
    )
    registry = SchemaRegistry.configured()
    assert registry.latest("crm", "customers").schema["properties"]["updated_at"]["format"] == "date-time"
    (source,) = load_sources()
    lake = LakeResource(base_uri=str(tmp_path / "lake"))

    failure = kill_the_tap_mid_run(source, lake, state_db)
    assert "the tap's sync exited with -9" in str(failure)
    assert 0 < len(raw_customers(lake, "acme_corp", provider="crm")) < rows
    run_source(source, lake, state_db)  # resumes from the bookmark
    records = raw_customers(lake, "acme_corp", provider="crm")
    assert sorted({r["id"] for r in records}) == list(range(1, rows + 1))  # nothing lost
    copies = {}
    for record in records:  # a duplicate is the same record again, under the same key
        assert copies.setdefault(record["id"], record) == record
    assert len(records) > rows  # the killed run's records came again: curated must deduplicate

    with psycopg.connect(postgres.url("crm"), autocommit=True) as conn:  # the same day, later
        conn.execute("""INSERT INTO public.customers SELECT i, NULL, NULL, NULL, NULL, '2026-11-01 20:00Z',
                        '2026-11-01 20:00Z', false, 'new' FROM generate_series(60001, 60020) AS i""")
        conn.execute(
            "UPDATE public.customers SET tags = 'updated', updated_at = '2026-11-01 21:00Z' WHERE id IN (5, 50)"
        )
        # Updated a day later: its new version lands under 2026-11-02, the old one is under 2026-11-01.
        conn.execute("UPDATE public.customers SET tags = 'next day', updated_at = '2026-11-02 09:00Z' WHERE id = 150")
    warehouse = WarehouseResource(url=state_db)
    defs = lake_job_defs(source_definitions([source]), registry, lake, warehouse)
    before = raw_keys(lake, "acme_corp", provider="crm")
    assert materialize(defs, "source__acme_corp__crm", dagster_instance).success
    new_records = raw_customers(lake, "acme_corp", raw_keys(lake, "acme_corp", provider="crm") - before, "crm")
    assert sorted(r["id"] for r in new_records) == sorted([5, 50, 150, rows, *range(60001, 60021)])

    lake_run = defs.resolve_job_def("crm_lake").execute_in_process(
        instance=dagster_instance, tags=range_tags("2026-11-01", "2026-11-01"), raise_on_error=False
    )
    assert lake_run.success
    checks = {e.asset_check_key.name: e.passed for e in lake_run.get_asset_check_evaluations()}
    assert checks == {"pandera_schema": True, "reconciles_with_raw": True}
    curated = lake_run.asset_materializations_for_node("curated_tables")[0].metadata
    assert curated["dagster/row_count"].value == rows + 20 and curated["duplicates_removed"].value > 2
    with warehouse.connect() as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM raw_cdp.crm_customers").fetchone()
        assert total == distinct == rows + 20
        latest = dict(conn.execute("SELECT id, tags FROM raw_cdp.crm_customers WHERE id IN (5, 6, 50, 60001)"))
        assert latest == {5: "updated", 6: "vip", 50: "updated", 60001: "new"}
        assert conn.execute("SELECT tags FROM raw_cdp.crm_customers WHERE id = 150").fetchall() == [("vip",)]
        types = dict(
            conn.execute("""SELECT column_name, data_type FROM information_schema.columns
                            WHERE table_schema = 'raw_cdp' AND table_name = 'crm_customers'""")
        )
    assert (types["id"], types["accepts_marketing"], types["updated_at"]) == (
        "bigint", "boolean", "timestamp with time zone"
    )  # fmt: skip
    assert {"tenant_id", "event_date", "_source_file", "_run_id"} <= set(types)

    # The next day: customer 150's newer version replaces the older one, in curated and in the
    # warehouse (whose 2026-11-01 partition the load reloads), once.
    next_day = defs.resolve_job_def("crm_lake").execute_in_process(
        instance=dagster_instance, tags=range_tags("2026-11-02", "2026-11-02"), raise_on_error=False
    )
    assert next_day.success and all(e.passed for e in next_day.get_asset_check_evaluations())
    curated = {k: v.value for k, v in next_day.asset_materializations_for_node("curated_tables")[0].metadata.items()}
    assert curated["dagster/row_count"] == 1 and curated["superseded_in_other_days"] == {"2026-11-01": 1}
    table = spark.read.format("delta").load(lake.spark_path("curated/crm_customers"))
    assert table.count() == table.select("id").distinct().count() == rows + 20
    assert [tuple(r) for r in table.where("id = 150").select("tags", "event_date").collect()] == [
        ("next day", date(2026, 11, 2))
    ]
    with warehouse.connect() as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM raw_cdp.crm_customers").fetchone()
        assert total == distinct == rows + 20
        assert conn.execute("SELECT tags, event_date FROM raw_cdp.crm_customers WHERE id = 150").fetchall() == [
            ("next day", date(2026, 11, 2))
        ]


def test_a_file_tap_from_pypi_is_registered_listed_run_and_reported_from_the_cli(
    state_db, tmp_path, monkeypatch, capsys
):
    """tap-jsonl, installed by the platform: `cdp schemas import --source` registers its stream (the
    event time chosen: the tap's own replication key is a file time), `cdp sources run` lands the
    files' records under their event day, `cdp sources list` and `status` show the source and the
    bookmark it reached."""
    data = tmp_path / "orders"
    data.mkdir()
    orders = [{"id": 1, "status": "paid", "total": 12.5, "updated_at": "2026-11-02T10:00:00Z"},
              {"id": 2, "status": "open", "total": 3, "updated_at": "2026-11-02T11:00:00Z"}]  # fmt: skip
    (data / "a.jsonl").write_text("".join(json.dumps(order) + "\n" for order in orders))
    document = {"tenants": {"globex": {"sources": {"shop_files": {
        "tap": "tap-jsonl==0.3.1", "retries": 0, "streams": {"orders": {"to": "shop_files/orders"}},
        "config": {"path": str(data / "*.jsonl"), "stream_name": "orders", "primary_keys": ["id"]}}}}}}  # fmt: skip
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    for name, value in {"CDP_SOURCES_FILE": str(write(tmp_path, json.dumps(document))), "CDP_POSTGRES_URL": state_db,
                        "CDP_SCHEMA_DIR": str(tmp_path / "schemas"), "CDP_LAKE_URI": lake.base_uri}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    assert main(["schemas", "import", "--source", "globex/shop_files", "--event-time", "orders=updated_at"]) == 0
    assert "shop_files/orders: registered v1 from orders (key id; event time updated_at)" in capsys.readouterr().out
    assert main(["sources", "list"]) == 0
    assert capsys.readouterr().out == "globex/shop_files\ttap-jsonl==0.3.1\tby hand\torders → shop_files/orders\n"
    assert main(["sources", "run", "globex/shop_files"]) == 0
    assert "globex/shop_files: landed orders 2 in 1 files; 0 dead letters" in capsys.readouterr().out
    (key,) = [o.key for o in lake.list("raw/globex/shop_files/orders/")]
    assert "/year=2026/month=11/day=02/" in key
    landed = decode_ndjson_gz(lake.read_bytes(key))
    assert [{k: r[k] for k in orders[0]} for r in landed] == orders
    assert main(["sources", "status"]) == 0
    status = capsys.readouterr().out
    assert (
        status.startswith("globex/shop_files\tactive\tbookmark of ")
        and '"replication_key": "_sdc_last_modified"' in status
    )


SCRIPTED_TAP = """
import json, os, subprocess, sys, time

def main():
    args = sys.argv[1:]
    if "--discover" in args:
        print(json.dumps({"streams": [{"tap_stream_id": "things", "stream": "things", "schema": {}, "metadata": []}]}))
        return
    mode, log = os.environ["SCRIPTED_TAP_MODE"], os.environ["SCRIPTED_TAP_LOG"]
    state = json.load(open(args[args.index("--state") + 1])) if "--state" in args else None
    with open(log, "a") as runs:
        runs.write(json.dumps({"state": state, "properties": "--properties" in args}) + "\\n")
    if mode == "fail_once" and len(open(log).readlines()) == 1:
        print("ERROR connection reset by peer", file=sys.stderr)
        sys.exit(2)
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "updated_at": {"type": "string"}}}
    print(json.dumps({"type": "SCHEMA", "stream": "things", "schema": schema, "key_properties": ["id"]}))
    print(json.dumps({"type": "RECORD", "stream": "things", "record": {"id": 1, "updated_at": "2026-11-02T00:00:00Z"}}))
    print(json.dumps({"type": "STATE", "value": {"position": 1}}), flush=True)
    print("INFO synced 1 record for person@example.com", file=sys.stderr)
    print("raw row 7 jane@example.org +1 555 010 9999", file=sys.stderr, flush=True)
    if mode == "batch":  # the Singer SDK's batch files, which the target refuses
        print(json.dumps({"type": "BATCH", "stream": "things", "encoding": {"format": "jsonl"}, "manifest": []}))
        sys.stdout.flush()
        time.sleep(600)
    if mode == "hang":
        child = subprocess.Popen(["sleep", "600"])
        with open(os.environ["SCRIPTED_TAP_PIDS"], "w") as pids:
            pids.write(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    if mode == "unauthorized":
        print("CRITICAL 401 Client Error: Unauthorized for url: https://api.example.com/things", file=sys.stderr)
        sys.exit(1)
"""


@pytest.fixture(scope="session")
def scripted_tap_package() -> str:
    """A tap of our own as a local package, so the platform installs it as it installs any tap (its
    directory is named after its code, so a changed script is a new package and a new virtualenv)."""
    package = TEST_STATE / f"tap-scripted-{hashlib.sha256(SCRIPTED_TAP.encode()).hexdigest()[:10]}"
    package.mkdir(parents=True, exist_ok=True)
    (package / "tap_scripted.py").write_text(SCRIPTED_TAP)
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tap-scripted"\nversion = "0.1.0"\n'
        '[project.scripts]\ntap-scripted = "tap_scripted:main"\n'
        '[tool.setuptools]\npy-modules = ["tap_scripted"]\n'
    )
    return f"tap-scripted @ {package.as_uri()}"


def test_a_tap_the_target_refuses_is_stopped_at_once(scripted_tap_package, state_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTED_TAP_MODE", "batch")
    monkeypatch.setenv("SCRIPTED_TAP_LOG", str(tmp_path / "runs.jsonl"))
    ensure_tap(scripted_tap_package)
    source = scripted_source(scripted_tap_package, retries=0, timeout_minutes=1)
    started = time.monotonic()
    with pytest.raises(TapFailed, match="BATCH messages .* are not accepted") as refused:
        run_source(source, LakeResource(base_uri=str(tmp_path)), state_db)
    assert time.monotonic() - started < 50  # stopped at once, not left waiting for its timeout
    assert refused.value.report.landed["customers"] == 1 and refused.value.report.bookmark == {"position": 1}


def scripted_source(requirement: str, name: str = "scripted", **fields) -> Source:
    document = {"tenants": {"acme_corp": {"sources": {name: {
        "tap": requirement, "streams": {"things": {"to": "shopify/customers"}}, **fields}}}}}  # fmt: skip
    (source,) = SourcesFile.model_validate(document).sources()
    return source


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_tap_hanging_past_its_timeout_is_stopped_and_the_next_run_resumes(
    scripted_tap_package, state_db, tmp_path, monkeypatch
):
    monkeypatch.setenv("SCRIPTED_TAP_MODE", "hang")
    monkeypatch.setenv("SCRIPTED_TAP_PIDS", str(tmp_path / "pids"))
    monkeypatch.setenv("SCRIPTED_TAP_LOG", str(tmp_path / "runs.jsonl"))
    source = scripted_source(scripted_tap_package, timeout_minutes=0.1, retries=3)
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    ensure_tap(source.tap)  # installed (or found) first, so the timeout measures the run alone
    started = time.monotonic()
    with pytest.raises(TapTimeout, match="ran past its timeout of 0.1 minutes") as stopped:
        run_source(source, lake, state_db)
    assert 6 <= time.monotonic() - started < 30
    tap_pid, child_pid = map(int, (tmp_path / "pids").read_text().split())
    time.sleep(0.5)
    assert not alive(tap_pid) and not alive(child_pid)  # the whole process group
    report = stopped.value.report
    assert report.attempts == 1 and report.exit_code == -signal.SIGKILL
    assert report.landed["customers"] == 1 and report.bookmark == {"position": 1}
    assert report.stderr_tail == ["INFO synced 1 record for <email>"]  # the raw row is not a log line

    with pytest.raises(TapTimeout):
        run_source(source, lake, state_db)
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    # The second run resumed from the bookmark; neither was retried.
    assert runs == [{"state": None, "properties": False}, {"state": {"position": 1}, "properties": False}]


def test_a_failing_tap_is_retried_with_backoff_and_an_unauthorized_one_is_paused_at_once(
    scripted_tap_package, state_db, tmp_path, monkeypatch
):
    monkeypatch.setenv("SCRIPTED_TAP_LOG", str(tmp_path / "runs.jsonl"))
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    monkeypatch.setenv("SCRIPTED_TAP_MODE", "fail_once")
    ensure_tap(scripted_tap_package)
    started = time.monotonic()
    report = run_source(scripted_source(scripted_tap_package, retries=2, retry_backoff_seconds=1.5), lake, state_db)
    assert report.attempts == 2 and time.monotonic() - started >= 1.5 and report.landed["customers"] == 1
    (tmp_path / "runs.jsonl").unlink()
    with pytest.raises(TapFailed, match="the tap's sync exited with 2"):
        run_source(scripted_source(scripted_tap_package, retries=0), lake, state_db)

    monkeypatch.setenv("SCRIPTED_TAP_MODE", "unauthorized")
    source = scripted_source(scripted_tap_package, name="api", retries=3, retry_backoff_seconds=30)
    with pytest.raises(SourcePaused, match=r"paused: authentication failure: .*Unauthori") as paused:
        run_source(source, lake, state_db)
    assert paused.value.report.attempts == 1  # no retry: it would be refused again
    with pytest.raises(SourcePaused, match="is paused") as still:
        run_source(source, lake, state_db)
    assert still.value.report.attempts == 0
    monkeypatch.setenv("SCRIPTED_TAP_MODE", "ok")
    changed = scripted_source(
        scripted_tap_package, name="api", retries=0, config={"api_key": "a-new-key"}, catalog_option="--properties"
    )
    assert run_source(changed, lake, state_db).landed["customers"] == 1
    last_run = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    assert last_run["properties"]  # the older taps' flag, as declared


def test_taps_get_their_own_virtualenv_once_and_a_broken_package_is_a_clear_error(
    scripted_tap_package, state_db, tmp_path
):
    command = ensure_tap(scripted_tap_package)
    venv = taps_dir() / venv_name(scripted_tap_package)
    assert command == venv / "bin" / "tap-scripted" and (venv / INSTALLED_MARKER).exists()
    installed_at = (venv / INSTALLED_MARKER).stat().st_mtime
    assert ensure_tap(scripted_tap_package) == command and (venv / INSTALLED_MARKER).stat().st_mtime == installed_at
    assert venv_name(TAP_POSTGRES) == "pipelinewise-tap-postgres-1.8.4"
    assert (
        venv_name(TAP_POSTGRES, ("b==2", "a==1"))
        == venv_name(TAP_POSTGRES, ("a==1", "b==2"))
        != venv_name(TAP_POSTGRES, ("a==1",))
    )

    with pytest.raises(
        TapInstallError,
        match=r"(?s)cannot install pipelinewise-tap-postgres==0\.0\.1: .*no version of pipelinewise-tap-postgres==0\.0\.1",
    ):
        ensure_tap("pipelinewise-tap-postgres==0.0.1", root=tmp_path)
    assert not (tmp_path / "pipelinewise-tap-postgres-0.0.1").exists()
    with pytest.raises(TapInstallError, match="installs no command 'tap-nothing'"):
        ensure_tap(scripted_tap_package, "tap-nothing")


def test_runs_of_one_source_never_overlap(state_db):
    with source_session(state_db, "acme_corp", "crm"):
        with (
            pytest.raises(RuntimeError, match="acme_corp/crm is already running"),
            source_session(state_db, "acme_corp", "crm"),
        ):
            pass
        with source_session(state_db, "globex", "crm"):  # another source is free to run
            pass
    with source_session(state_db, "acme_corp", "crm"):  # released after the run
        pass


@pytest.mark.slow
def test_the_platforms_definitions_carry_the_sources_file(tmp_path):
    """`cdp_assets.definitions` (what `dagster dev` loads) has an asset, job and schedule per declared
    source of `CDP_SOURCES_FILE`, and a raw, a generic curated and a warehouse asset for a stream
    registered under `CDP_SCHEMA_DIR`; an invalid file stops the load with the place of the problem."""
    check = (
        "from dagster import AssetKey; from cdp_assets.definitions import defs; "
        "print(defs.resolve_assets_def(AssetKey(['sources', 'acme_corp', 'crm_db'])).group_names_by_key, "
        "defs.resolve_job_def('source__acme_corp__crm_db').name, "
        "defs.resolve_schedule_def('source__globex__shop_files_schedule').cron_schedule, "
        "[defs.resolve_assets_def(AssetKey(k)).group_names_by_key[AssetKey(k)] for k in "
        "(['raw', 'shop_files', 'orders'], ['curated', 'shop_files_orders'], ['warehouse', 'shop_files_orders'])])"
    )
    text = documented_example().replace("      shop_files:\n", '      shop_files:\n        schedule: "5 4 * * *"\n')
    (tmp_path / "schemas/shop_files/orders").mkdir(parents=True)
    shutil.copy(SCHEMA_DIR / "shopify/orders/v1.json", tmp_path / "schemas/shop_files/orders/v1.json")
    env = {**os.environ, "CDP_SOURCES_FILE": str(write(tmp_path, text)), "CDP_SCHEMA_DIR": str(tmp_path / "schemas")}
    loaded = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, cwd=ROOT)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "'sources'" in loaded.stdout and "source__acme_corp__crm_db 5 4 * * *" in loaded.stdout
    assert "['raw', 'curated', 'warehouse']" in loaded.stdout

    write(tmp_path, text.replace("retries: 2", "retries: -1"))
    refused = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode != 0
    assert "tenants.acme_corp.sources.crm_db.retries: Input should be greater than or equal to 0" in refused.stderr
