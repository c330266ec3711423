"""Benchmark: a managed source (tap → Singer target → durable raw files) against the same tap to /dev/null.

`pipelinewise-tap-postgres`, installed by the platform, reads one table of Shopify-customer-shaped
rows from a scratch database in the embedded PostgreSQL with INCREMENTAL replication from scratch.
The baseline runs the tap exactly as the platform does (discovery, the same selected catalog) with
its output thrown away; the platform's run is `run_source` into a scratch lake, records published
and bookmark stored. Rounds alternate (`--rounds`, default 2) and the best of each is kept. Prints
records/s for both and their ratio (goal ≥ 0.8: the platform is not the bottleneck).

    .venv/bin/python bench/sources.py                   # 500,000 rows
    .venv/bin/python bench/sources.py --rows 50000      # quick
"""

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from cdp_resources.lake import LakeResource
from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.settings import state_dir
from cdp_sources.declarations import SourcesFile
from cdp_sources.runner import run_source, selected_catalog
from cdp_sources.taps import ensure_tap

TAP = "pipelinewise-tap-postgres==1.8.4"
OVERRIDES = ["psycopg2-binary==2.9.10"]  # the tap's pin has no wheel for Python 3.11+


def prepare(server: EmbeddedPostgres, rows: int) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        for database in ("bench_crm", "bench_sources"):
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {database}")
    with psycopg.connect(server.url("bench_crm"), autocommit=True) as conn:
        conn.execute("""CREATE TABLE customers (
            id integer PRIMARY KEY, email text, first_name text, last_name text, phone text,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, accepts_marketing boolean, tags text)""")
        conn.execute(
            """INSERT INTO customers
               SELECT i, 'person' || i || '@example.com', 'First' || i, 'Last' || i, '+1555' || lpad(i::text, 7, '0'),
                      '2026-01-01'::timestamptz + i * interval '1 second', '2026-01-01'::timestamptz + i * interval '1 second',
                      i %% 2 = 0, 'vip'
               FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE customers")


def baseline(command: Path, source, config: dict) -> float:
    """The tap alone, as the platform runs it (discovery, then the selected catalog), output discarded."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    try:
        (workdir / "config.json").write_text(json.dumps(config))
        started = time.perf_counter()
        discovered = subprocess.run(
            [str(command), "--config", "config.json", "--discover"], cwd=workdir, capture_output=True, check=True
        )
        (workdir / "catalog.json").write_text(json.dumps(selected_catalog(json.loads(discovered.stdout), source)))
        subprocess.run(
            [str(command), "--config", "config.json", "--catalog", "catalog.json"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        return time.perf_counter() - started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def platform(source, lake_dir: Path, dsn: str, rows: int) -> float:
    shutil.rmtree(lake_dir, ignore_errors=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS cdp_sources CASCADE")  # no bookmark: the whole table again
    started = time.perf_counter()
    report = run_source(source, LakeResource(base_uri=str(lake_dir)), dsn)
    elapsed = time.perf_counter() - started
    assert sum(report.landed.values()) == rows, report.landed
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    server = EmbeddedPostgres.default()
    started_here = not server.running()
    server.start()
    try:
        measure(server, args.rows, args.rounds)
    finally:
        if started_here:
            server.stop()


def measure(server: EmbeddedPostgres, rows: int, rounds: int) -> None:
    prepare(server, rows)
    config = {"host": "127.0.0.1", "port": server.port, "user": "cdp", "password": "", "dbname": "bench_crm"}
    document = {"tenants": {"bench": {"sources": {"crm": {
        "tap": TAP, "overrides": OVERRIDES, "config": config, "retries": 0,
        "streams": {"public-customers": {"to": "shopify/customers", "replication_method": "INCREMENTAL",
                                         "replication_key": "updated_at"}}}}}}}  # fmt: skip
    (source,) = SourcesFile.model_validate(document).sources()
    command = ensure_tap(TAP, overrides=tuple(OVERRIDES))
    lake_dir = state_dir() / "bench" / "sources_lake"
    tap_seconds, platform_seconds = [], []
    for _ in range(rounds):
        tap_seconds.append(baseline(command, source, config))
        platform_seconds.append(platform(source, lake_dir, server.url("bench_sources"), rows))
    shutil.rmtree(lake_dir, ignore_errors=True)

    tap_rate, platform_rate = rows / min(tap_seconds), rows / min(platform_seconds)
    print(f"rows: {rows:,}  rounds: {rounds}")
    print(f"tap → /dev/null:          {tap_rate:>10,.0f} records/s  (best of {[round(s, 1) for s in tap_seconds]} s)")
    print(
        f"tap → platform (durable): {platform_rate:>10,.0f} records/s  "
        f"(best of {[round(s, 1) for s in platform_seconds]} s)"
    )
    print(f"ratio platform / tap alone: {platform_rate / tap_rate:.2f}  (goal ≥ 0.8)")


if __name__ == "__main__":
    main()
