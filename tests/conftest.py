"""Session-wide real parts: one PostgreSQL server, one Spark session with Delta, one moto S3 server.

State goes under `.cdp/test/` (git-ignored); Spark's jars come from the project's `.cdp/jars` cache.
"""

import contextlib
import io
import os
import shutil
import subprocess
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import boto3
import psycopg
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance
from psycopg import sql
from pyspark.sql import functions as F

from cdp_resources.dbt_project import dbt_project, prepare
from cdp_resources.lake import LakeResource
from cdp_resources.local_ports import free_port
from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.settings import PROJECT_DIR, state_dir
from cdp_resources.spark import SparkDeltaResource, get_spark_session
from cdp_resources.warehouse import WarehouseResource
from cdp_resources.warehouse_security import PIPELINE_ROLE
from cdp_sampledata.generator import GeneratorConfig, generate

TEST_STATE = state_dir() / "test"
# moto's credentials, in the environment before Spark's JVM starts (it inherits the environment
# then, and S3A takes them from there as boto3 does).
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(key, value)


def pytest_configure(config):
    """dbt's manifest prepared before any test module imports the definitions (they do not parse it)."""
    prepare(dbt_project)


@pytest.fixture(scope="session")
def postgres() -> EmbeddedPostgres:
    """The session's PostgreSQL server (an embedded cluster of its own under .cdp/test/postgres)."""
    server = EmbeddedPostgres(TEST_STATE / "postgres").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def warehouse(postgres) -> WarehouseResource:
    """A fresh database of its own in the session's PostgreSQL for the warehouse tables and dbt,
    owned by and used as the pipeline's role (as the embedded `cdp` database is)."""
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "warehouse" WITH (FORCE)')
        conn.execute(sql.SQL("CREATE DATABASE warehouse OWNER {}").format(sql.Identifier(PIPELINE_ROLE)))
    return WarehouseResource(url=postgres.url("warehouse", PIPELINE_ROLE))


# Spark settings of the test session that the assets' Spark resource keeps (it would otherwise
# reset them to the platform's defaults on the shared session).
TEST_SPARK_CONFIG = {"spark.sql.shuffle.partitions": "2"}


@pytest.fixture(scope="session")
def spark():
    """The session's Spark session with Delta Lake, sized for tests."""
    return get_spark_session(overrides={"spark.ui.enabled": "false", **TEST_SPARK_CONFIG})


@pytest.fixture(scope="session")
def spark_resource(spark) -> SparkDeltaResource:
    """The assets' Spark resource on the session's Spark session (`session_for(lake)` reaches a lake)."""
    return SparkDeltaResource(spark_config=TEST_SPARK_CONFIG)


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, spoken to over HTTP by boto3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, request) -> str:
    name = f"cdp-{request.node.name.lower().replace('_', '-').replace('[', '-').replace(']', '')}"[:60]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def any_lake(request, tmp_path) -> LakeResource:
    """A lake on a local directory, then the same test on moto's S3 server (under a prefix)."""
    if request.param == "local":
        return LakeResource(base_uri=str(tmp_path / "lake"))
    return LakeResource(
        base_uri=f"s3://{request.getfixturevalue('s3_bucket')}/lake",
        s3_endpoint_url=request.getfixturevalue("s3_endpoint"),
    )


@pytest.fixture(scope="session")
def dagster_instance(postgres, tmp_path_factory) -> DagsterInstance:
    """A Dagster instance configured by the project's dagster.yaml, storing in the test PostgreSQL."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").symlink_to(PROJECT_DIR / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["CDP_DAGSTER_POSTGRES_URL"] = postgres.url("dagster")
    with DagsterInstance.get() as instance:
        yield instance


def run_assets(
    lake: LakeResource,
    instance: DagsterInstance,
    first,
    last,
    selection: list[str] | None = None,
    raise_on_error: bool = True,
    checks: bool = False,
    groups: list[str] = ("raw", "curated"),
    warehouse: WarehouseResource | None = None,
    only_checks: bool = False,
    run_config: dict | None = None,
):
    """Materialise `selection` (asset keys like "curated/orders"; default: the asset `groups`) for the
    days first..last in one run on `lake` (and `warehouse`); the asset checks run too when `checks`,
    and alone (nothing materialised) when `only_checks`; `run_config` configures assets that take config."""
    from dagster import AssetKey, AssetSelection, Definitions, define_asset_job

    from cdp_assets.definitions import defs
    from partitions import daily_partitions, range_tags

    keys = (
        AssetSelection.keys(*(AssetKey(k.split("/")) for k in selection))
        if selection
        else AssetSelection.groups(*groups)
    )
    keys = keys - keys.without_checks() if only_checks else keys if checks else keys.without_checks()
    job = define_asset_job("test_run", selection=keys, partitions_def=daily_partitions)
    test_defs = Definitions(
        assets=list(defs.assets),
        asset_checks=list(defs.asset_checks),
        jobs=[job],
        executor=defs.executor,
        resources={
            **defs.resources,
            "lake": lake,
            "warehouse": warehouse or WarehouseResource(),
            "spark": SparkDeltaResource(spark_config=TEST_SPARK_CONFIG),
        },
    )
    return test_defs.resolve_job_def("test_run").execute_in_process(
        instance=instance,
        tags=range_tags(first.isoformat(), last.isoformat()),
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


def cdp(*args: str) -> subprocess.CompletedProcess:
    """The `cdp` command's code run in this process (a new interpreter per call would spend seconds
    importing), with its exit code and what it prints."""
    from cdp_cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["cdp", *args], code, out.getvalue(), err.getvalue())


def comparable(frame):
    """Rows without the run id (it differs between runs by design), source files relative to the lake."""
    frame = frame.drop("_run_id")
    if "_source_file" not in frame.columns:
        return frame
    return frame.withColumn("_source_file", F.regexp_extract("_source_file", "(raw/.*)$", 1))


def assert_same_rows(one, other, name: str = "") -> None:
    """Two runs' versions of a table hold the same rows (`comparable`; duplicates counted, as
    `exceptAll` counts them), and some: one Spark job per table."""
    one, other = comparable(one), comparable(other)
    sides = one.withColumn("_in_one", F.lit(1)).unionByName(other.withColumn("_in_one", F.lit(0)))
    copies = sides.groupBy(*one.columns).agg(
        F.sum("_in_one").alias("in_one"), F.sum(1 - F.col("_in_one")).alias("in_other")
    )
    rows_one, rows_other, differing = copies.agg(
        *(F.coalesce(F.sum(side), F.lit(0)) for side in ("in_one", "in_other")),
        F.count_if(F.col("in_one") != F.col("in_other")),
    ).first()
    assert rows_one == rows_other > 0 and differing == 0, (name, rows_one, rows_other, differing)


# A small sample shared by the graph tests: 2 tenants, 5 days.
SAMPLE_CONFIG = GeneratorConfig(tenants=("acme_corp", "globex"), days=5, customers=1_500, seed=7)


def dictionary_encoded(parquet_file: str | Path) -> dict[str, bool]:
    """Per column of a Parquet file's first row group: whether it is dictionary-encoded."""
    chunks = pq.ParquetFile(parquet_file).metadata.row_group(0)
    return {
        chunks.column(i).path_in_schema: any("DICTIONARY" in e for e in chunks.column(i).encodings)
        for i in range(chunks.num_columns)
    }


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory) -> LakeResource:
    lake = LakeResource(base_uri=str(tmp_path_factory.mktemp("sample") / "lake"))
    generate(lake, SAMPLE_CONFIG, workers=1, progress=False)
    return lake


# The curated zone's sample: one tenant, two days, shared by the curated-zone and identity tests.
CURATED_CONFIG = GeneratorConfig(tenants=("acme_corp",), days=2, customers=1_200, seed=21)


@pytest.fixture(scope="session")
def curated_lakes(tmp_path_factory) -> tuple[LakeResource, LakeResource]:
    """The same raw zone twice: one for a single historic run, one for day-by-day incremental runs."""
    root = tmp_path_factory.mktemp("curated")
    historic = LakeResource(base_uri=str(root / "historic"))
    generate(historic, CURATED_CONFIG, workers=1, progress=False)
    shutil.copytree(root / "historic", root / "incremental")
    return historic, LakeResource(base_uri=str(root / "incremental"))


@pytest.fixture(scope="session")
def curated_historic(curated_lakes, dagster_instance):
    """The first lake after one historic run of the raw and curated assets (checks included)."""
    lake = curated_lakes[0]
    result = run_assets(
        lake,
        dagster_instance,
        CURATED_CONFIG.start,
        CURATED_CONFIG.start + timedelta(days=CURATED_CONFIG.days - 1),
        checks=True,
    )
    assert result.success
    return lake, result


# Predictions too: on two days no tenant gets a model, but the (empty) scores table is made, which
# the warehouse loads and dbt reads.
IDENTITY_GROUPS = ("identity", "profiles", "predictions")


def copy_lake(lake: LakeResource, name: str) -> LakeResource:
    """A copy of a sample lake under .cdp/test/lakes/<name>, for runs that must not touch the original."""
    target = TEST_STATE / "lakes" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(lake.base_uri, target)
    return LakeResource(base_uri=str(target))


def copy_database(postgres, source_url: str, name: str) -> str:
    """A copy of the database at `source_url` named `name` (its sessions ended: a template has none); its URL."""
    source = psycopg.conninfo.conninfo_to_dict(source_url)["dbname"]
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (source,),
        )
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source)))
    return postgres.url(name)


@pytest.fixture(scope="session")
def identity_historic(curated_historic, dagster_instance):
    """A copy of the curated sample after one historic run of identity resolution and profiles."""
    lake = copy_lake(curated_historic[0], "identity-historic")
    result = run_assets(
        lake,
        dagster_instance,
        CURATED_CONFIG.start,
        CURATED_CONFIG.start + timedelta(days=CURATED_CONFIG.days - 1),
        groups=IDENTITY_GROUPS,
    )
    assert result.success
    return lake, result


@pytest.fixture(scope="session")
def warehouse_loaded(identity_historic, dagster_instance, warehouse):
    """The identity sample (curated tables, identity map, profiles) loaded into the warehouse in one historic run."""
    lake, _ = identity_historic
    result = run_assets(
        lake,
        dagster_instance,
        CURATED_CONFIG.start,
        CURATED_CONFIG.start + timedelta(days=CURATED_CONFIG.days - 1),
        groups=["warehouse"],
        warehouse=warehouse,
    )
    assert result.success
    return lake, result


def pytest_sessionstart(session):
    shutil.rmtree(TEST_STATE / "lakes", ignore_errors=True)
    Path(TEST_STATE).mkdir(parents=True, exist_ok=True)


# The whole `lake_daily` job's sample: one tenant, two days, small enough for one run of every asset.
LAKE_DAILY_CONFIG = GeneratorConfig(tenants=("acme_corp",), days=2, customers=400, seed=11)


@pytest.fixture(scope="session")
def lake_daily_run(tmp_path_factory, dagster_instance, postgres):
    """The real `lake_daily` job (every asset and check of the graph) run in-process on a fresh sample,
    a fresh warehouse database and the packaged destinations, for the days the daily schedule asks
    for the morning after the sample's last day (CDP_LATE_DAYS set so it covers the whole sample)."""
    from dagster import Definitions, build_schedule_context

    from cdp_assets.definitions import defs
    from sensors.schedules import lake_daily_job, lake_daily_schedule
    from tests.webhook_support import fresh_database

    lake = LakeResource(base_uri=str(tmp_path_factory.mktemp("lake_daily") / "lake"))
    generate(lake, LAKE_DAILY_CONFIG, workers=1, progress=False)
    warehouse = WarehouseResource(url=fresh_database(postgres))
    last = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    tick = build_schedule_context(scheduled_execution_time=datetime.combine(last + timedelta(days=1), time(1), UTC))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDP_LATE_DAYS", str(LAKE_DAILY_CONFIG.days - 1))
        (request,) = lake_daily_schedule.evaluate_tick(tick).run_requests
    test_defs = Definitions(
        assets=list(defs.assets),
        asset_checks=list(defs.asset_checks),
        jobs=[lake_daily_job],
        executor=defs.executor,
        resources={
            **defs.resources,
            "lake": lake,
            "warehouse": warehouse,
            "spark": SparkDeltaResource(spark_config=TEST_SPARK_CONFIG),
        },
    )
    started = datetime.now(UTC)
    result = test_defs.resolve_job_def("lake_daily").execute_in_process(
        instance=dagster_instance, tags=request.tags, raise_on_error=False
    )
    return {"lake": lake, "warehouse": warehouse, "result": result, "request": request, "started": started}
