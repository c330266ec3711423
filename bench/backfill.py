"""Benchmark: historic mode (`cdp backfill`: one run of `lake_daily` over every day) at 30, 365 and
1,096 daily partitions of a small generated tenant, with the backfill's wall time split into
Dagster's bookkeeping and each stage's compute.

Bookkeeping is the time Dagster's instance spends storing the run's events (planned,
materialisation, check, step and log events: its event-log storage calls, timed in this process)
plus the run's set-up before its first step; a stage's compute is its steps' wall time less the
bookkeeping stored inside them. For the 30-day case it also runs the same days one partition at a
time (as the daily schedule would), `--single-days` of them, and scales their sum to 30.

Each case runs in a process of its own (the partitions' start is read at import), on the
embedded PostgreSQL, in databases of its own for the warehouse and for Dagster's instance, and a
lake under .cdp/bench/backfill/. `--dagster-defaults` runs the backfill without the switches
`cdp backfill` sets (Dagster's one-event-per-partition bookkeeping), for comparison.

    .venv/bin/python bench/backfill.py                          # 30, 365 and 1,096 days
    .venv/bin/python bench/backfill.py --days 30 --single-days 5
    .venv/bin/python bench/backfill.py --days 30 --dagster-defaults
    .venv/bin/python bench/backfill.py --planning 30,365       # creating the run alone, each way

Goals (issue 37): bookkeeping <= 15 % of the wall time at 1,096 days; the 30-day backfill <= 0.3x
the sum of 30 single-day runs; cost from 365 to 1,096 days growing no worse than linearly.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

START = date(2023, 1, 1)
STAGES = (
    ("raw__", "raw"),
    ("curated", "curated"),
    ("identity", "identity"),
    ("profiles__", "profiles"),
    ("warehouse__", "warehouse"),
    ("dbt_models", "dbt"),
    ("docs__", "dbt"),
    ("segments__", "segments"),
    ("activation__", "activation"),
)
GOAL_BOOKKEEPING_SHARE = 0.15
GOAL_SINGLE_RUN_RATIO = 0.3


def stage_of(step_key: str) -> str:
    return next((stage for prefix, stage in STAGES if step_key.startswith(prefix)), step_key)


def fresh_database(admin_url: str, name: str, synchronous_commit: bool = True) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        if not synchronous_commit:
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


class StorageTimer:
    """Times every call of the instance's event-log storage, by step (None: outside any step)."""

    def __init__(self, storage):
        self.seconds: dict[str | None, float] = defaultdict(float)
        self.events: Counter = Counter()
        self.writes = 0
        self.running = False  # planned events name their step too, but are stored before the run starts
        for name in ("store_event", "store_event_batch"):
            setattr(storage, name, self._timed(getattr(storage, name)))

    def _timed(self, method):
        def timed(events):
            batch = [events] if hasattr(events, "dagster_event") else list(events)
            started = time.perf_counter()
            try:
                return method(events)
            finally:
                self.seconds[batch[0].step_key if self.running else None] += time.perf_counter() - started
                self.running = self.running or any(e.dagster_event_type == "PIPELINE_START" for e in batch)
                self.writes += 1
                self.events.update(e.dagster_event_type.value if e.dagster_event_type else "LOG" for e in batch)

        return timed


def setup_case(days: int, tag: str, dagster_defaults: bool = False) -> tuple[date, date]:
    """Environment of one case (before anything imports the partitions): its start, lake and databases."""
    from cdp_resources.postgres_server import EmbeddedPostgres
    from cdp_resources.settings import PROJECT_DIR, state_dir

    server = EmbeddedPostgres.default().start()
    root = state_dir() / "bench" / "backfill"
    home = root / f"dagster_home_{tag}"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").symlink_to(PROJECT_DIR / "dagster.yaml")
    fresh_database(server.url("postgres"), f"bench_wh_{tag}")
    # As the embedded server's own `dagster` database, unless measuring Dagster's defaults.
    fresh_database(server.url("postgres"), f"bench_dagster_{tag}", synchronous_commit=dagster_defaults)
    os.environ.update(
        CDP_START_DATE=START.isoformat(),
        CDP_LAKE_URI=str(root / f"lake_{days}"),
        CDP_POSTGRES_URL=server.url(f"bench_wh_{tag}"),
        CDP_DAGSTER_POSTGRES_URL=server.url(f"bench_dagster_{tag}"),
        DAGSTER_HOME=str(home),
        # A tiny tenant's day holds a handful of orders: one zero total is a third of the day.
        CDP_CRITICAL_THRESHOLD="1",
    )
    return START, START + timedelta(days=days - 1)


def prepare_lake(days: int, customers: int, tenants: tuple[str, ...]):
    from cdp_cli.demo import DERIVED_ZONES, sample_is_current
    from cdp_resources.lake import LakeResource
    from cdp_sampledata.generator import GeneratorConfig, generate

    lake = LakeResource(base_uri=os.environ["CDP_LAKE_URI"])
    config = GeneratorConfig(tenants=tenants, days=days, customers=customers, seed=42, start=START)
    generated = 0.0
    if not sample_is_current(lake, config):
        generated = generate(lake, config, workers=os.cpu_count() or 2, progress=False).seconds
    for zone in DERIVED_ZONES:  # directories too: Delta refuses to create a table where an empty log dir is left
        shutil.rmtree(Path(os.environ["CDP_LAKE_URI"]) / zone, ignore_errors=True)
    return lake, generated


def breakdown(instance, run_id: str, timer: StorageTimer, called: float, returned: float) -> dict:
    """Wall time of the run: set-up, each stage's compute, bookkeeping, teardown (seconds)."""
    from dagster import DagsterEventType

    steps: dict[str, list[float]] = {}
    run_start = None
    for entry in instance.all_logs(
        run_id,
        of_type={
            DagsterEventType.RUN_START,
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
        },
    ):
        kind = entry.dagster_event.event_type
        if kind == DagsterEventType.RUN_START:
            run_start = entry.timestamp
        else:
            steps.setdefault(entry.step_key, []).append(entry.timestamp)
    in_steps = sum(seconds for step, seconds in timer.seconds.items() if step)
    compute: dict[str, float] = defaultdict(float)
    stored: dict[str, float] = defaultdict(float)
    last_end = run_start
    for step, (begin, *end) in steps.items():
        finished = end[-1] if end else begin
        compute[stage_of(step)] += (finished - begin) - timer.seconds.get(step, 0.0)
        stored[stage_of(step)] += timer.seconds.get(step, 0.0)
        last_end = max(last_end, finished)
    wall = returned - called
    setup = run_start - called
    return {
        "wall": wall,
        "setup": setup,
        "bookkeeping": setup + in_steps + (returned - last_end),
        "bookkeeping_in_steps": in_steps,
        "teardown": returned - last_end,
        "compute": dict(compute),
        "bookkeeping_by_stage": dict(stored),
        "events": dict(timer.events),
        "writes": timer.writes,
    }


def run_case(days: int, customers: int, tenants: tuple[str, ...], dagster_defaults: bool) -> dict:
    first, last = setup_case(days, "defaults" if dagster_defaults else "switches", dagster_defaults)
    lake, generated = prepare_lake(days, customers, tenants)
    from dagster import DagsterInstance

    from cdp_assets.definitions import defs
    from cdp_cli.backfill import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG, missing_days, run_backfill

    with DagsterInstance.get() as instance:
        timer = StorageTimer(instance.event_log_storage)
        called = time.time()
        if dagster_defaults:
            result = defs.resolve_job_def("lake_daily").execute_in_process(
                instance=instance,
                tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat(), BACKFILL_TAG: "defaults"},
                raise_on_error=False,
            )
        else:
            result = run_backfill(first, last, instance, every=0)
        returned = time.time()
        figures = breakdown(instance, result.run_id, timer, called, returned)
        figures.update(
            days=days,
            success=result.success,
            generated_seconds=generated,
            orders=orders_in(lake),
            missing=missing_days(instance, first, last),
        )
    return figures


def run_single_days(days: int, customers: int, tenants: tuple[str, ...], count: int) -> dict:
    """The first `count` of `days` days, each as its own run (Dagster's defaults), in order."""
    first, _ = setup_case(days, "single")
    prepare_lake(days, customers, tenants)
    from dagster import DagsterInstance

    from cdp_assets.definitions import defs

    job = defs.resolve_job_def("lake_daily")
    walls = []
    with DagsterInstance.get() as instance:
        for offset in range(count):
            started = time.time()
            result = job.execute_in_process(
                instance=instance, partition_key=(first + timedelta(days=offset)).isoformat(), raise_on_error=False
            )
            walls.append(time.time() - started)
            if not result.success:
                raise SystemExit(f"single-day run of {first + timedelta(days=offset)} failed: {result.run_id}")
    return {"days": days, "single_walls": walls}


def time_planning(days: int, subset: bool, synchronous_commit: bool) -> dict:
    """Creating the run alone (its planned events), with or without the planned-subset switch."""
    first, last = setup_case(days, "planning", dagster_defaults=synchronous_commit)
    if subset:
        os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "1"
    from dagster import DagsterInstance

    from cdp_assets.definitions import defs
    from cdp_cli.backfill import RANGE_END_TAG, RANGE_START_TAG

    with DagsterInstance.get() as instance:
        timer = StorageTimer(instance.event_log_storage)
        started = time.perf_counter()
        instance.create_run_for_job(
            defs.resolve_job_def("lake_daily"),
            tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        )
        seconds = time.perf_counter() - started
    return {"days": days, "subset": subset, "synchronous_commit": synchronous_commit, "seconds": seconds,
            "events": dict(timer.events)}  # fmt: skip


def orders_in(lake) -> int:
    from deltalake import DeltaTable

    path = lake.spark_path("curated/orders")
    try:
        return sum(batch.num_rows for batch in DeltaTable(path).to_pyarrow_dataset().to_batches(columns=["order_id"]))
    except Exception:  # noqa: BLE001 - a failed backfill may have written no orders table
        return 0


def child(argv: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *argv]


def in_child(argv: list[str]) -> dict:
    output = subprocess.run(child(argv), check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def report(case: dict) -> list[str]:
    wall, book = case["wall"], case["bookkeeping"]
    compute = "  ".join(f"{stage} {seconds:.1f}" for stage, seconds in case["compute"].items())
    events = ", ".join(f"{k} {v:,}" for k, v in sorted(case["events"].items(), key=lambda kv: -kv[1])[:5])
    lines = [
        f"{case['days']:>5} days: {'ok' if case['success'] else 'FAILED'}, {case['orders']:,} orders; "
        f"wall {wall:.1f}s = set-up {case['setup']:.1f} + steps + teardown {case['teardown']:.1f}",
        f"       bookkeeping {book:.1f}s ({book / wall:.1%}; goal <= {GOAL_BOOKKEEPING_SHARE:.0%}): "
        f"set-up {case['setup']:.1f}, inside steps {case['bookkeeping_in_steps']:.1f}; "
        f"{case['writes']:,} storage writes",
        f"       compute by stage (s): {compute}",
        f"       bookkeeping by stage (s): {'  '.join(f'{k} {v:.1f}' for k, v in case['bookkeeping_by_stage'].items())}",
        f"       events: {events}",
        f"       UI: {'every day of every partitioned asset materialised' if not case['missing'] else case['missing']}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", default="30,365,1096", help="comma-separated partition counts")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--tenants", default="acme_corp")
    parser.add_argument("--single-days", type=int, default=30, help="single-day runs to time for the 30-day case")
    parser.add_argument("--dagster-defaults", action="store_true", help="without cdp backfill's switches")
    parser.add_argument("--planning", help="comma-separated days: time creating the run alone, each way")
    parser.add_argument("--planning-way", help=argparse.SUPPRESS)
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tenants = tuple(args.tenants.split(","))
    if args.case:
        print(json.dumps(run_case(args.case, args.customers, tenants, args.dagster_defaults), default=str))
        return
    if args.single:
        print(json.dumps(run_single_days(args.case or 30, args.customers, tenants, args.single)))
        return
    if args.planning_way:
        subset, synchronous = args.planning_way.split(",")
        print(json.dumps(time_planning(int(args.planning), subset == "subset", synchronous == "sync")))
        return
    if args.planning:
        for days in (int(d) for d in args.planning.split(",")):
            for way in ("per-day,sync", "per-day,async", "subset,async"):
                timed = in_child(["--planning", str(days), "--planning-way", way])
                events = sum(v for k, v in timed["events"].items() if k.endswith("_PLANNED"))
                print(
                    f"{days:>5} days, planned events {way:<14}: {timed['seconds']:7.1f}s, {events:,} events", flush=True
                )
        return
    common = ["--customers", str(args.customers), "--tenants", args.tenants]
    print(
        f"bench/backfill: {args.tenants}, {args.customers} customers a tenant, from {START}; "
        f"{'Dagster defaults' if args.dagster_defaults else 'cdp backfill switches'}",
        flush=True,
    )
    cases = {}
    for days in (int(d) for d in args.days.split(",")):
        extra = ["--dagster-defaults"] if args.dagster_defaults else []
        cases[days] = case = in_child(["--case", str(days), *common, *extra])
        print("\n".join(report(case)), flush=True)
        if days == 30 and args.single_days:
            walls = in_child(["--single", str(args.single_days), *common])["single_walls"]
            summed = sum(walls) * 30 / len(walls)
            ratio = case["wall"] / summed
            print(
                f"       {len(walls)} single-day runs: {sum(walls):.1f}s (median {sorted(walls)[len(walls) // 2]:.1f}s), "
                f"scaled to 30: {summed:.1f}s; backfill/sum {ratio:.2f} (goal <= {GOAL_SINGLE_RUN_RATIO})",
                flush=True,
            )
    if 365 in cases and 1096 in cases:
        growth = cases[1096]["wall"] / cases[365]["wall"]
        print(f"365 -> 1,096 days: wall x{growth:.2f} for x{1096 / 365:.2f} the days (goal: no worse than linear)")


if __name__ == "__main__":
    main()
