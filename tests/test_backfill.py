"""Historic mode at scale: `cdp backfill` over a year of a tiny tenant through the real `lake_daily`
job, in processes of their own (the partitions' start, moved back to the tenant's history, is read
at import), then single days of the same lake as the daily schedule runs them."""

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, RunsFilter
from deltalake import DeltaTable

from cdp_resources.settings import PROJECT_DIR
from cdp_transform.entities import ENTITIES

FIRST, LAST = date(2025, 1, 1), date(2025, 12, 31)
SAMPLE_DAYS = (date(2025, 6, 14), LAST)
BIN = Path(sys.executable).parent


def fresh_database(postgres, name: str) -> str:
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.url(name)


def run(command: list[str], env: dict) -> str:
    done = subprocess.run(command, env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"{command[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def curated_days(lake: Path, days: tuple[date, ...]) -> dict[str, list[tuple]]:
    """Every curated table's rows of `days`, sorted, without the run id (it differs by design)."""
    rows = {}
    for spec in ENTITIES:
        table = DeltaTable(str(lake / "curated" / spec.table)).to_pyarrow_table(
            filters=[("event_date", "in", list(days))]
        )
        table = table.drop_columns(["_run_id"])
        rows[spec.table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist())
    return rows


def membership(url: str, as_of: date) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT segment, tenant_id, cdp_customer_id FROM segments.segment_membership WHERE as_of_date = %s "
            "ORDER BY 1, 2, 3",
            (as_of,),
        ).fetchall()


@pytest.mark.scale
def test_a_year_backfills_in_one_run_and_equals_single_days(postgres, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(PROJECT_DIR / "dagster.yaml")
    lake = tmp_path / "lake"
    env = {
        **os.environ,
        "CDP_START_DATE": FIRST.isoformat(),
        "CDP_LAKE_URI": str(lake),
        "CDP_POSTGRES_URL": fresh_database(postgres, "backfill_warehouse"),
        "CDP_DAGSTER_POSTGRES_URL": fresh_database(postgres, "backfill_dagster"),
        "DAGSTER_HOME": str(home),
        # A tiny tenant's day holds one or two orders: one with a zero total is half the day.
        "CDP_CRITICAL_THRESHOLD": "1",
    }
    days = (LAST - FIRST).days + 1
    run([str(BIN / "cdp"), "generate", "--tenants", "tiny", "--days", str(days), "--customers", "40",
         "--start", FIRST.isoformat(), "--lake", str(lake), "--workers", "2"], env)  # fmt: skip
    output = run([str(BIN / "cdp"), "backfill", "--from", FIRST.isoformat(), "--to", LAST.isoformat()], env)
    assert "succeeded" in output and "every day of every partitioned asset is materialised" in output, output
    assert "steps " in output  # the progress view

    monkeypatch.setenv("CDP_DAGSTER_POSTGRES_URL", env["CDP_DAGSTER_POSTGRES_URL"])
    with DagsterInstance.from_config(str(home)) as instance:
        (backfill,) = instance.get_runs(RunsFilter(job_name="lake_daily"))
        # Every day of every partitioned asset, as the UI's partition view reads it.
        from cdp_assets.definitions import defs

        layer = defs.resolve_job_def("lake_daily").asset_layer
        partitioned = [k for k in layer.executable_asset_keys if layer.asset_graph.get(k).partitions_def]
        every_day = {(FIRST + timedelta(days=n)).isoformat() for n in range(days)}
        assert len(partitioned) > 60
        for key in partitioned:
            assert every_day <= set(instance.get_materialized_partitions(key)), key.to_user_string()
        # Counts reconcile per day: every curated table's reconciliation check passed over the range.
        checks = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(backfill.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        reconciled = {c.asset_key for c in checks if c.check_name == "reconciles_with_raw" and c.passed}
        assert reconciled == {AssetKey(["curated", s.table]) for s in ENTITIES if s.reconciles}
        assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]

    historic = curated_days(lake, SAMPLE_DAYS)
    members = membership(env["CDP_POSTGRES_URL"], LAST)
    assert sum(map(len, historic.values())) > 0 and members
    # The sample days again, each as the daily schedule runs a day (Dagster's defaults).
    for day in SAMPLE_DAYS:
        run([str(BIN / "dagster"), "job", "execute", "-m", "cdp_assets.definitions", "-j", "lake_daily",
             "--tags", json.dumps({"dagster/partition": day.isoformat()})], env)  # fmt: skip
    assert curated_days(lake, SAMPLE_DAYS) == historic
    assert membership(env["CDP_POSTGRES_URL"], LAST) == members


@pytest.mark.parametrize(
    "first, last, error",
    [
        ("1999-01-01", "1999-02-01", "before the first daily partition (2026-01-01): set CDP_START_DATE=1999-01-01"),
        ("2026-02-01", "2026-01-05", "--to 2026-01-05 is before --from 2026-02-01"),
        ("2026-01-01", "2999-01-01", "--to 2999-01-01 is after the last complete day"),
    ],
)
def test_backfill_refuses_days_the_partitions_do_not_hold(first, last, error):
    env = {k: v for k, v in os.environ.items() if k != "CDP_START_DATE"}
    done = subprocess.run(
        [str(BIN / "cdp"), "backfill", "--from", first, "--to", last], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and error in done.stderr, done.stderr
