"""Tenant isolation in the warehouse, tried from a tenant analyst's login: the two-tenant sample
goes through the whole pipeline (raw, curated, identity, profiles, the warehouse load, dbt) into a
database of its own; then, as acme_corp's analyst, every relation in every schema, functions,
SET ROLE / RESET ROLE, set_config and names with SQL in them. No row of globex ever comes back;
acme_corp's personal columns are masked without the PII grant and visible with it."""

import json
import os
import re
import shutil
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from cdp_resources.dbt_project import cdp_dbt_project, dbt_cli, dbt_project
from cdp_resources.lake import LakeResource
from cdp_resources.settings import PROJECT_DIR
from cdp_resources.warehouse import WarehouseResource
from cdp_resources.warehouse_security import PII_GROUP, PIPELINE_ROLE, READER_GROUP
from cdp_sampledata.generator import GeneratorConfig, generate
from tests.conftest import IDENTITY_GROUPS, TEST_STATE, cdp, run_assets

CONFIG = GeneratorConfig(tenants=("acme_corp", "globex"), days=1, customers=600, seed=11)
A, B = CONFIG.tenants
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)
DATABASE = "rls"
# One run per stage, as the pipeline's schedule runs them.
STAGES = [["raw", "curated"], list(IDENTITY_GROUPS), ["warehouse"], ["staging", "intermediate", "marts", "segments"]]
TOKEN = re.compile(r"[^A-Za-z0-9_.@+-]+")


@pytest.fixture(scope="module")
def pipeline(postgres, dagster_instance):
    """A two-tenant sample through the whole graph into database `rls`, as the pipeline's role."""
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        for role in (f"{A}_analyst", f"{B}_analyst"):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(PIPELINE_ROLE))
        )
    warehouse = WarehouseResource(url=postgres.url(DATABASE, PIPELINE_ROLE))
    lake = LakeResource(base_uri=str(TEST_STATE / "lakes" / "rls"))
    generate(lake, CONFIG, workers=1, progress=False)
    for groups in STAGES:
        assert run_assets(lake, dagster_instance, FIRST, LAST, groups=groups, warehouse=warehouse).success, groups
    return lake, warehouse


@pytest.fixture(scope="module")
def analysts(pipeline, postgres):
    """Both tenants' analyst roles, made by `cdp tenants add` (passwords as it prints them)."""
    admin = postgres.url(DATABASE)
    passwords = {}
    for tenant in (A, B):
        added = cdp("tenants", "add", tenant, "--url", admin)
        assert added.returncode == 0, added.stderr
        passwords[tenant] = re.search(r"password \(shown once\): (\S+)", added.stdout).group(1)
    listed = cdp("tenants", "list", "--url", admin)
    assert listed.stdout.split() == [A, f"{A}_analyst", "masked", B, f"{B}_analyst", "masked"]
    return passwords


def connect_as(postgres, tenant: str, password: str) -> psycopg.Connection:
    return psycopg.connect(postgres.url(DATABASE, f"{tenant}_analyst"), password=password, autocommit=True)


def pipeline_rows(warehouse, query: str, *params) -> list[tuple]:
    with warehouse.connect() as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def b_markers(pipeline) -> set[str]:
    """Values only tenant B's rows hold: its people's emails and customer ids (not A's too)."""
    _, warehouse = pipeline

    def values(tenant: str) -> set[str]:
        return {
            str(value)
            for query in (
                "SELECT email FROM raw_cdp.customer_profiles WHERE tenant_id = %s AND email IS NOT NULL",
                "SELECT cdp_customer_id FROM raw_cdp.customer_profiles WHERE tenant_id = %s",
            )
            for (value,) in pipeline_rows(warehouse, query, tenant)
        }

    markers = values(B) - values(A)
    assert len(markers) > 500, len(markers)
    return markers


def readable_columns(conn, oid: int) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
            "AND has_column_privilege(attrelid, attnum, 'SELECT') ORDER BY attnum",
            (oid,),
        )
    ]


def test_every_relation_in_every_schema_shows_only_the_own_tenant(pipeline, analysts, postgres, b_markers):
    _, warehouse = pipeline
    relations = pipeline_rows(
        warehouse,
        "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 2, 3",
    )
    tenant_schemas = {"raw_cdp", "staging", "intermediate", "marts", "segments", "tenant_views", "cdp_security"}
    assert {schema for _, schema, _, _ in relations} >= tenant_schemas | {"pg_catalog", "information_schema"}
    seen, denied = {}, []
    with connect_as(postgres, A, analysts[A]) as conn:
        for oid, schema, name, _ in relations:
            columns = readable_columns(conn, oid)
            target = sql.Identifier(schema, name)
            if not columns:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(target))
                denied.append(f"{schema}.{name}")
                continue
            rows = conn.execute(
                sql.SQL("SELECT row_to_json(t)::text FROM (SELECT {} FROM {}) t").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), target
                )
            ).fetchall()
            leaked = {token for (text,) in rows for token in TOKEN.split(text)} & b_markers
            assert not leaked, f"{schema}.{name} shows {len(leaked)} of {B}'s values"
            if "tenant_id" in columns:
                tenants = {t for (t,) in conn.execute(sql.SQL("SELECT DISTINCT tenant_id FROM {}").format(target))}
                assert tenants <= {A}, f"{schema}.{name}"
            seen[f"{schema}.{name}"] = len(rows)
    # Partitions, the load's shadow tables and the security tables' internals are closed.
    assert any(name.startswith("raw_cdp.orders_") for name in denied)
    assert all(not name.startswith("raw_cdp_loading.") for name in seen)
    # A sees all of its own rows, through the tables, the views and the masked views.
    for relation, query in {
        "marts.fct_orders": "SELECT count(*) FROM marts.fct_orders WHERE tenant_id = %s",
        "staging.stg_orders": "SELECT count(*) FROM staging.stg_orders WHERE tenant_id = %s",
        "raw_cdp.customer_profiles": "SELECT count(*) FROM raw_cdp.customer_profiles WHERE tenant_id = %s",
        "tenant_views.marts__customer_360": "SELECT count(*) FROM marts.customer_360 WHERE tenant_id = %s",
        "segments.segment_membership": "SELECT count(*) FROM segments.segment_membership WHERE tenant_id = %s",
    }.items():
        assert seen[relation] == pipeline_rows(warehouse, query, A)[0][0] > 0, relation


def test_every_tenant_table_is_forced_and_every_model_protected(pipeline, analysts):
    _, warehouse = pipeline
    unprotected = pipeline_rows(
        warehouse,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('raw_cdp', 'staging', 'intermediate', 'marts', 'segments') AND c.relkind IN ('r', 'p') "
        "AND NOT c.relispartition AND NOT (c.relrowsecurity AND c.relforcerowsecurity "
        "AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))",
    )
    assert unprotected == []
    models = {
        f"{node['schema']}.{node['alias']}"
        for node in json.loads(dbt_project.manifest_path.read_text())["nodes"].values()
        if node["resource_type"] == "model"
    }
    masked = {
        name.replace("__", ".", 1)
        for (name,) in pipeline_rows(
            warehouse, "SELECT table_name FROM information_schema.views WHERE table_schema = 'tenant_views'"
        )
    }
    assert models and models <= masked
    # Direct access to partitions is closed by privileges: not one is granted to a tenant group.
    assert pipeline_rows(
        warehouse,
        "SELECT count(*) FROM pg_class c WHERE c.relispartition AND (has_table_privilege(%s, c.oid, 'SELECT') "
        "OR has_table_privilege(%s, c.oid, 'SELECT'))",
        READER_GROUP,
        PII_GROUP,
    ) == [(0,)]


def emails(conn, relation: str) -> set:
    return {e for (e,) in conn.execute(f"SELECT email FROM {relation}")}


def test_personal_columns_are_masked_without_the_pii_grant(pipeline, analysts, postgres):
    _, warehouse = pipeline
    admin = postgres.url(DATABASE)
    real = {e for (e,) in pipeline_rows(warehouse, "SELECT email FROM marts.customer_360 WHERE tenant_id = %s", A)}
    assert len(real) > 100
    with connect_as(postgres, A, analysts[A]) as conn:
        for statement in (
            "SELECT email FROM marts.customer_360",
            "SELECT * FROM marts.customer_360",
            "SELECT phone FROM raw_cdp.customer_profiles",
            "SELECT email FROM staging.stg_customer_profiles",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert emails(conn, "tenant_views.marts__customer_360") <= {"***", None}
        assert {p for (p,) in conn.execute("SELECT phone FROM tenant_views.raw_cdp__customer_profiles")} <= {
            "***",
            None,
        }
        # A leaky predicate on the masked view sees the mask, not the value.
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as error:
            conn.execute("SELECT 1 FROM tenant_views.marts__customer_360 WHERE email::int = 1")
        assert "@" not in str(error.value)

        granted = cdp("tenants", "grant", A, "--pii", "--url", admin)
        assert granted.returncode == 0 and "visible" in granted.stdout, granted.stderr
        assert emails(conn, "tenant_views.marts__customer_360") == real
        assert emails(conn, "marts.customer_360") == real
        with connect_as(postgres, B, analysts[B]) as other:  # B's grant is its own, still masked
            assert emails(other, "tenant_views.marts__customer_360") <= {"***", None}

        revoked = cdp("tenants", "revoke", A, "--pii", "--url", admin)
        assert revoked.returncode == 0 and "masked" in revoked.stdout, revoked.stderr
        assert emails(conn, "tenant_views.marts__customer_360") <= {"***", None}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT email FROM marts.customer_360")


def test_roles_settings_and_functions_do_not_reach_another_tenant(pipeline, analysts, postgres):
    with connect_as(postgres, A, analysts[A]) as conn:
        own = conn.execute("SELECT count(*) FROM marts.fct_orders").fetchone()[0]
        assert own > 0
        for role in (f"{B}_analyst", PIPELINE_ROLE, "cdp"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT set_config('role', %s, false)", (role,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role)))
        # The group roles A belongs to hold no tenant: under them, nothing comes back.
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(READER_GROUP)))
        assert conn.execute("SELECT count(*) FROM tenant_views.marts__fct_orders").fetchone()[0] == 0
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT count(*) FROM marts.fct_orders").fetchone()[0] == own
        # Settings a client may issue change nothing the policies read.
        conn.execute("SELECT set_config('cdp.tenant_id', %s, false)", (B,))
        conn.execute("SET application_name = 'globex'")
        assert conn.execute("SELECT DISTINCT tenant_id FROM marts.fct_orders").fetchall() == [(A,)]
        conn.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT count(*) FROM marts.fct_orders")
        conn.execute("RESET row_security")
        # Functions: the tenant list is the role's own; the pipeline's are closed; the map is read-only.
        assert conn.execute("SELECT cdp_security.current_tenants()").fetchone() == ([A],)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT cdp_security.protect('marts.fct_orders'::regclass)")
        for statement in (
            f"INSERT INTO cdp_security.tenant_roles VALUES (current_user, '{B}', true)",
            f"UPDATE cdp_security.tenant_roles SET tenant_id = '{B}'",
            "CREATE TABLE marts.mine (tenant_id text)",
            "ALTER TABLE marts.fct_orders DISABLE ROW LEVEL SECURITY",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT tenant_id FROM cdp_security.tenant_roles").fetchall() == [(A,)]
        # Names with SQL in them are names, not statements.
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("marts", "fct_orders; SET ROLE cdp")))
        assert conn.execute("SELECT current_user").fetchone() == (f"{A}_analyst",)


def test_names_with_sql_or_paths_are_refused_by_cdp_tenants(pipeline, postgres):
    admin = postgres.url(DATABASE)
    for name in ("x'; DROP TABLE marts.fct_orders; --", "../x", "a/b", "", "Acme", "a" * 64):
        refused = cdp("tenants", "add", name, "--url", admin)
        assert refused.returncode == 1 and "tenant name" in refused.stderr, name
    unknown = cdp("tenants", "grant", "nobody_here", "--pii", "--url", admin)
    assert unknown.returncode == 1 and "cdp tenants add nobody_here" in unknown.stderr
    assert pipeline_rows(pipeline[1], "SELECT count(*) FROM marts.fct_orders")[0][0] > 0


def test_policies_survive_a_reload_and_an_analysts_new_model_is_protected(
    pipeline, analysts, postgres, dagster_instance, tmp_path
):
    """A warehouse reload of one day swaps partitions under the protected parent; an analyst's new
    dbt model gets the post-hook with no other change."""
    lake, warehouse = pipeline
    assert run_assets(lake, dagster_instance, LAST, LAST, groups=["warehouse"], warehouse=warehouse).success
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_DIR / "dbt_project", project_dir, ignore=shutil.ignore_patterns("target", "logs"))
    (project_dir / "models/marts/my_big_orders.sql").write_text(
        "select tenant_id, order_id, email, total_usd from {{ ref('fct_orders') }} where total_usd > 0\n"
    )
    project = cdp_dbt_project(project_dir)
    os.environ.update(warehouse.dbt_env())
    dbt_cli(project).cli(["build", "--select", "my_big_orders"], target_path=project.target_path).wait()
    expected = {
        relation: pipeline_rows(warehouse, f"SELECT count(*) FROM {relation} WHERE tenant_id = %s", A)[0][0]
        for relation in ("raw_cdp.orders", "marts.my_big_orders")
    }
    assert all(expected.values())
    with connect_as(postgres, A, analysts[A]) as conn:
        for relation, count in expected.items():
            assert conn.execute(f"SELECT count(*), count(DISTINCT tenant_id) FROM {relation}").fetchone() == (
                count,
                1,
            )
        assert emails(conn, "tenant_views.marts__my_big_orders") <= {"***", None}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT email FROM marts.my_big_orders")
