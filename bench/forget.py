"""Benchmark: the time to forget one person, and what dominates it.

Generates a lake (`--days`, `--customers`, one tenant), runs the graph from raw to the warehouse
over it in one run (dbt's models with `--dbt`), then forgets one person whose profile joins
several sources (by email, through the queue as `cdp privacy forget` does) and prints the
request's seconds per step (resolve, raw, dead letters, exports, Delta, warehouse) and the Delta
step's split (delete, purge, vacuum), with what was removed.

    .venv/bin/python bench/forget.py                       # 2 days, 2,000 customers (the demo's size)
    .venv/bin/python bench/forget.py --days 30             # a 30-day lake
"""

import argparse
import json
import shutil
import time
from datetime import timedelta

import psycopg
from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

from cdp_assets.definitions import defs
from cdp_assets.privacy import process_requests
from cdp_privacy.requests import enqueue
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import MAP
from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.settings import state_dir
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from cdp_resources.warehouse_security import PIPELINE_ROLE, ensure_security
from cdp_sampledata.generator import GeneratorConfig, generate
from partitions import daily_partitions, range_tags

TENANT = "acme_corp"


def build(root, days: int, customers: int, with_dbt: bool) -> tuple[LakeResource, WarehouseResource, float]:
    shutil.rmtree(root, ignore_errors=True)
    lake = LakeResource(base_uri=str(root / "lake"))
    config = GeneratorConfig(tenants=(TENANT,), days=days, customers=customers, seed=5)
    generate(lake, config, progress=False)
    server = EmbeddedPostgres.default().start()
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "bench_forget" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "bench_forget" OWNER "{PIPELINE_ROLE}"')
    warehouse = WarehouseResource(url=server.url("bench_forget", PIPELINE_ROLE))
    with warehouse.connect(autocommit=True) as conn:
        ensure_security(conn)
    groups = ["raw", "curated", "identity", "profiles", "warehouse"]
    groups += ["predictions", "staging", "intermediate", "marts", "segments", "activation"] if with_dbt else []
    job = define_asset_job("bench", AssetSelection.groups(*groups).without_checks(), partitions_def=daily_partitions)
    bench_defs = Definitions(
        assets=list(defs.assets),
        jobs=[job],
        executor=defs.executor,
        resources={**defs.resources, "lake": lake, "warehouse": warehouse, "spark": SparkDeltaResource()},
    )
    last = config.start + timedelta(days=days - 1)
    started = time.monotonic()
    result = bench_defs.resolve_job_def("bench").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(config.start.isoformat(), last.isoformat())
    )
    assert result.success
    return lake, warehouse, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--dbt", action="store_true", help="also build dbt's models, segments and audiences")
    args = parser.parse_args()
    lake, warehouse, graph_seconds = build(state_dir() / "bench" / "forget", args.days, args.customers, args.dbt)
    spark = SparkDeltaResource().session_for(lake)
    identity = read_delta(spark, lake, MAP).where(f"tenant_id = '{TENANT}'")
    kinds = identity.groupBy("cdp_customer_id").agg({"id_type": "count"}).orderBy("count(id_type)", ascending=False)
    profile = kinds.first()["cdp_customer_id"]
    email = identity.where(f"cdp_customer_id = '{profile}' AND id_type = 'email'").first()["id_value"]
    with warehouse.connect(autocommit=True) as conn:
        enqueue(conn, TENANT, "email", email)
    started = time.monotonic()
    (receipt,) = process_requests(spark, lake, warehouse)
    total = time.monotonic() - started
    print(f"lake: {args.days} days, {args.customers:,} customers; graph built in {graph_seconds:.0f}s")
    print(f"forget one person: {total:.1f}s; per step {receipt['seconds']}; Delta {receipt['delta_seconds']}")
    print(f"removed {json.dumps(receipt['removed'])}; Delta files vacuumed {receipt['delta_files_vacuumed']}")


if __name__ == "__main__":
    main()
