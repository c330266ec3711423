"""Benchmark: the curated job against a plain Spark read of NDJSON.gz and write to Delta, same run.

Both read the same generated raw files. The baseline reads every stream's files with the same
read schema and writes them to Delta with no logic (the practical limit on this machine). The raw
assets first take stock of the files (manifests, drift; timed apart: the ingestion zone's work,
done as files land); then the curated job runs every curated asset over the whole range in one run
(historic mode), with typing, deduplication, normalisation, enrichment, quality rules, dead
letters, metadata and each table's asset checks (pandera's schema, reconciliation with the raw
records), as a user's run of the curated assets runs them. Prints records/s for both and their
ratio (goal ≥ 0.5 at 1M records or more), and the CPU seconds the Spark JVM spent on each side
(on Linux), split by thread: the tasks, the JIT compilers, the garbage collector, and the driver's
own work (planning, Delta commits, scheduling).

Two ratios, both fair to each side:
- cold: each side once in a fresh process and JVM (Spark started before the clock), as every
  Dagster run starts its own process. The JIT compiler's warm-up is part of it, and it is not
  shared: run one after the other in one JVM, the second side would profit from the first's
  compiled JSON reader and Parquet writer.
- warm: after one untimed pass of each side, both run again from empty output in the warm JVM,
  `--rounds` times in alternating order (the JVM keeps getting faster for a while, and
  alternation spreads that over both sides); the median of those rounds' ratios.
Last, the time one incremental partition (raw and curated assets) takes after 1 and after 30
days of history (a smaller population): `--rounds` runs, each on a copy of the lake as the history
left it, the first and their median. `--per-table` shows where the gap is instead: each curated
table's asset alone against a plain copy of its stream. `--scale` splits each side's warm time in
two: the fixed cost of a run (a lake of one day and a few hundred customers: Spark jobs, planning,
Delta commits, per table) and the cost of the records (the full lake's time less that).
`--connect` runs both sides on a Spark Connect server of the bench's own (as `cdp spark-server`
starts it), as runs do with `CDP_SPARK_MASTER=sc://…`: cold is then each side's first pass on a
freshly started server, and the CPU is the server JVM's.

    .venv/bin/python bench/curated.py                       # ~1.3 million raw records
    .venv/bin/python bench/curated.py --connect             # the same on a Spark Connect server
    .venv/bin/python bench/curated.py --customers 10000 --days 3 --rounds 1   # quick
    .venv/bin/python bench/curated.py --per-table     # where the gap is: each table alone
    .venv/bin/python bench/curated.py --scale         # where the gap is: fixed cost against cost per record
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job
from proc_cpu import cpu_seconds  # bench/'s own module
from pyspark.sql import SparkSession

from cdp_assets.curated import curate_table
from cdp_assets.definitions import defs
from cdp_ingest.manifests import raw_files_for
from cdp_resources.lake import LakeResource
from cdp_resources.settings import state_dir
from cdp_resources.spark import SparkDeltaResource, is_connect
from cdp_resources.spark_server import SparkConnectServer
from cdp_sampledata.generator import GeneratorConfig, generate
from cdp_transform.entities import ENTITIES

COLD_PREFIX = "cold pass: "
# `--connect`'s servers: the warm one, and one started afresh for each cold pass.
SERVER, COLD_SERVER = (
    SparkConnectServer(state_dir() / "bench" / name) for name in ("spark-server", "cold-spark-server")
)


# What the JVM's threads do, by the names Linux shows for them (`/proc/…/task/…/comm`, 15 characters).
THREAD_KINDS = {"tasks": ("Executor task",), "JIT": ("C1 Compiler", "C2 Compiler"), "GC": ("GC Thread",)}


def spark_jvm_pid(spark: SparkDeltaResource) -> int:
    """The process id of the JVM that runs `spark`'s work: this process's Spark driver, or the Spark
    Connect server (`--connect`) it names."""
    if not is_connect(spark.master):
        return spark.spark_session.sparkContext._gateway.proc.pid
    return next(
        server.pid() for server in (SERVER, COLD_SERVER) if server.port is not None and server.url() == spark.master
    )


def jvm_threads_cpu(pid: int) -> tuple[float, dict[int, tuple[str | None, float]]] | None:
    """The Spark driver JVM's (`pid`) CPU seconds so far, and per live thread its kind (`THREAD_KINDS`,
    or None) and CPU seconds, from Linux's /proc (None elsewhere). In local mode the driver runs the
    tasks too."""
    threads = Path(f"/proc/{pid}/task")
    if not threads.is_dir():
        return None
    per_thread = {}
    for thread in threads.iterdir():
        try:
            name = (thread / "comm").read_text()
            kind = next((k for k, prefixes in THREAD_KINDS.items() if name.startswith(prefixes)), None)
            per_thread[int(thread.name)] = (kind, cpu_seconds(pid, int(thread.name)))
        except OSError:  # the thread ended
            continue
    return cpu_seconds(pid), per_thread


def cpu_split(before, after) -> dict[str, float]:
    """The JVM's CPU seconds between two `jvm_threads_cpu` readings: all, per thread kind, and the
    rest ("driver and other": planning, Delta commits, scheduling; and threads that ended meanwhile)."""
    split = {"all": after[0] - before[0], **{kind: 0.0 for kind in THREAD_KINDS}}
    for thread, (kind, seconds) in after[1].items():
        if kind is not None:
            earlier = before[1].get(thread)
            split[kind] += seconds - (earlier[1] if earlier and earlier[0] == kind else 0.0)
    split["driver and other"] = split["all"] - sum(split[kind] for kind in THREAD_KINDS)
    return split


def with_cpu(pid: int, run, *args) -> tuple[float, str]:
    """(what `run(*args)` returns: its seconds, the CPU seconds of the JVM `pid` meanwhile, all and
    by thread kind, as printed beside them)."""
    before = jvm_threads_cpu(pid)
    seconds = run(*args)
    after = jvm_threads_cpu(pid)
    if before is None or after is None:
        return seconds, ""
    split = cpu_split(before, after)
    return seconds, f"  JVM CPU {split.pop('all'):5.1f} s: " + ", ".join(
        f"{kind} {value:4.1f}" for kind, value in split.items()
    )


def plain_copy(spark: SparkSession, read_schema: str, files: list[str], out: str) -> None:
    """The baseline's work for one stream: its raw files read with the read schema and written to
    Delta at `out`, with no logic."""
    spark.read.schema(read_schema).json(files).write.format("delta").mode("overwrite").save(out)


def baseline(lake: LakeResource, spark: SparkDeltaResource, out: str) -> float:
    session = spark.session_for(lake)
    started = time.perf_counter()
    for spec in {(s.provider, s.stream): s for s in ENTITIES}.values():
        files = [lake.spark_path(o.key) for o in lake.list("raw/") if f"/{spec.provider}/{spec.stream}/" in o.key]
        plain_copy(session, spec.read_schema, files, f"{out}/{spec.provider}_{spec.stream}")
    return time.perf_counter() - started


SIDES = ("baseline", "curated")


def one_pass(
    side: str, root: Path, lake: LakeResource, spark: SparkDeltaResource, first: date, last: date
) -> tuple[float, str]:
    """One pass of `side` from empty output (no baseline tables, no curated zone) in `spark`'s JVM
    (this process's, or the Spark Connect server's): its seconds and the JVM's CPU meanwhile."""
    pid = spark_jvm_pid(spark)
    if side == "baseline":
        shutil.rmtree(root / "baseline", ignore_errors=True)
        return with_cpu(pid, baseline, lake, spark, str(root / "baseline"))
    shutil.rmtree(root / "lake" / "curated", ignore_errors=True)
    return with_cpu(pid, run_assets, lake, spark, first, last, "curated")


def cold_pass(side: str, root: Path, first: date, last: date, connect: bool) -> tuple[float, str]:
    """`one_pass` of `side` in a fresh process: a new JVM (with `connect`, a fresh Spark Connect
    server), Spark started before the clock."""
    if connect:
        COLD_SERVER.stop()
        COLD_SERVER.start()
    command = [
        sys.executable,
        __file__,
        "--cold",
        side,
        "--root",
        str(root),
        "--first",
        str(first),
        "--last",
        str(last),
        *(["--connect"] if connect else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the cold {side} pass failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    seconds, cpu = json.loads(
        next(line.removeprefix(COLD_PREFIX) for line in done.stdout.splitlines() if line.startswith(COLD_PREFIX))
    )
    return seconds, cpu


def run_cold_side(side: str, root: Path, first: date, last: date, spark: SparkDeltaResource) -> None:
    """The child of `cold_pass`: prints its one pass's figures for the parent."""
    _ = spark.spark_session  # started before the clock
    print(
        COLD_PREFIX + json.dumps(one_pass(side, root, LakeResource(base_uri=str(root / "lake")), spark, first, last)),
        flush=True,
    )


def warm_round(
    root: Path, lake: LakeResource, spark: SparkDeltaResource, first: date, last: date, curated_first: bool
) -> tuple[float, float]:
    """One pass of each side in the warm JVM, in the order given; prints both and returns their
    seconds (baseline, curated)."""
    timed = {side: one_pass(side, root, lake, spark, first, last) for side in (SIDES[::-1] if curated_first else SIDES)}
    (base_seconds, base_cpu), (curated_seconds, curated_cpu) = timed["baseline"], timed["curated"]
    print(
        f"warm round on {lake.base_uri} ({'curated' if curated_first else 'baseline'} first): baseline {base_seconds:5.1f} s, "
        f"curated {curated_seconds:5.1f} s, ratio {base_seconds / curated_seconds:.2f}\n  baseline{base_cpu}\n  curated {curated_cpu}",
        flush=True,
    )
    return base_seconds, curated_seconds


def warm_rounds(
    root: Path, lake: LakeResource, spark: SparkDeltaResource, first: date, last: date, rounds: int
) -> list[tuple[float, float]]:
    """(baseline, curated) seconds of `rounds` warm rounds in alternating order (the JVM keeps
    getting faster for a while), after one untimed pass of each side."""
    for side in SIDES:
        one_pass(side, root, lake, spark, first, last)
    return [warm_round(root, lake, spark, first, last, curated_first=bool(n % 2)) for n in range(rounds)]


def scale(
    root: Path, lake: LakeResource, spark: SparkDeltaResource, first: date, last: date, records: int, rounds: int
) -> None:
    """Prints each side's fixed cost per run (warm, on a lake of one day and 500 customers, nearly
    all per-table work: Spark jobs, planning, Delta commits) and its cost for the records (the full
    lake's warm time less the fixed cost), with the ratio of each."""
    tiny_root = root / "tiny"
    tiny = LakeResource(base_uri=str(tiny_root / "lake"))
    config = GeneratorConfig(days=1, customers=500)
    tiny_records = generate(tiny, config, progress=False).total_records
    run_assets(tiny, spark, config.start, config.start, "raw")
    fixed, full = (
        [statistics.median(t[i] for t in timed) for i in (0, 1)]
        for timed in (
            warm_rounds(tiny_root, tiny, spark, config.start, config.start, rounds),
            warm_rounds(root, lake, spark, first, last, rounds),
        )
    )
    extra = [full[i] - fixed[i] for i in (0, 1)]
    print(f"{f'warm, median of {rounds} rounds':50s} {'baseline':>9s} {'curated':>9s} {'ratio':>6s}")
    for label, (base, curated) in (
        (f"fixed cost: a run over {tiny_records:,} records", fixed),
        (f"a run over {records:,} records", full),
        ("the records' cost: the difference", extra),
    ):
        ratio = f"{base / curated:6.2f}" if base > 0 and curated > 0 else "   n/a"  # a lake too small to tell
        print(f"  {label:48s} {base:7.1f} s {curated:7.1f} s {ratio}", flush=True)


def run_assets(lake: LakeResource, spark: SparkDeltaResource, first, last, *groups: str) -> float:
    """Seconds for one run of every asset of `groups` over the days first..last."""
    job = define_asset_job("bench", selection=AssetSelection.groups(*groups))
    bench_defs = Definitions(
        assets=list(defs.assets),
        jobs=[job],
        executor=defs.executor,
        resources={**defs.resources, "lake": lake, "spark": spark},
    )
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = bench_defs.resolve_job_def("bench").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    assert result.success
    return time.perf_counter() - started


def incremental_cost(
    root, spark: SparkDeltaResource, history_days: int, customers: int, runs: int
) -> tuple[int, list[float]]:
    """(average records a day, seconds of each run) for one incremental partition after
    `history_days` days of history, run `runs` times, each on a copy of the lake as the history
    left it: in a fresh process the first runs of the same partition are slower than later ones,
    so one run says little."""
    history = root / f"history-{history_days}"
    history_lake = LakeResource(base_uri=str(history))
    config = GeneratorConfig(days=history_days + 1, customers=customers)
    per_day = generate(history_lake, config, progress=False).total_records // config.days
    last = config.start + timedelta(days=history_days)
    run_assets(history_lake, spark, config.start, last - timedelta(days=1), "raw", "curated")
    seconds, lake = [], root / f"incremental-{history_days}"
    for _ in range(runs):
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(history, lake)
        seconds.append(run_assets(LakeResource(base_uri=str(lake)), spark, last, last, "raw", "curated"))
    return per_day, seconds


def per_table(root: Path, lake: LakeResource, spark: SparkDeltaResource, first: date, last: date, rounds: int) -> None:
    """Prints, per curated table, its asset's work alone (`curate_table`, in the warm JVM, tables
    one at a time) against a plain copy of its stream's files to Delta, and the medians of
    `rounds` passes after an untimed one."""
    session = spark.session_for(lake)
    seconds: dict[str, list[tuple[float, float]]] = {spec.table: [] for spec in ENTITIES}
    for n in range(rounds + 1):
        shutil.rmtree(root / "lake" / "curated", ignore_errors=True)
        shutil.rmtree(root / "copies", ignore_errors=True)
        for spec in ENTITIES:  # listed after the tables they read
            files, damaged, _ = raw_files_for(lake, spec.provider, spec.stream, first, last)
            started = time.perf_counter()
            curate_table(spec, lake, session, "bench", first, last, files, damaged)
            curated = time.perf_counter() - started
            started = time.perf_counter()
            plain_copy(session, spec.read_schema, files, str(root / "copies" / spec.table))
            if n:
                seconds[spec.table].append((curated, time.perf_counter() - started))
    totals = [0.0, 0.0]
    print(f"per table, alone, warm, median of {rounds}: {'curated':>9s} {'copy':>7s} {'ratio':>6s}")
    for table, timed in seconds.items():
        curated, copy = (statistics.median(t[i] for t in timed) for i in (0, 1))
        totals = [totals[0] + curated, totals[1] + copy]
        print(f"  {table:38s} {curated:7.2f} s {copy:5.2f} s {copy / curated:6.2f}")
    print(
        f"  {'all, one after the other':38s} {totals[0]:7.2f} s {totals[1]:5.2f} s {totals[1] / totals[0]:6.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument(
        "--incremental-customers", type=int, default=5_000, help="population for the incremental-partition cost"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="warm rounds of both sides after the warm-up pass, and runs of each incremental partition",
    )
    parser.add_argument(
        "--per-table", action="store_true", help="only each table alone against a copy of its stream (warm)"
    )
    parser.add_argument(
        "--scale", action="store_true", help="only each side's fixed cost per run and cost of the records (warm)"
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="both sides on a Spark Connect server of the bench's own (cdp spark-server's), not in this process's JVM",
    )
    parser.add_argument("--cold", choices=SIDES, help=argparse.SUPPRESS)  # the child of a cold pass, with:
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=date.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--last", type=date.fromisoformat, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold:
        run_cold_side(
            args.cold,
            args.root,
            args.first,
            args.last,
            SparkDeltaResource(**({"master": COLD_SERVER.url()} if args.connect else {})),
        )
        return
    spark = SparkDeltaResource(**({"master": SERVER.start().url()} if args.connect else {}))
    try:
        bench(args, spark)
    finally:
        if args.connect:  # before its server: a client whose server has gone retries for ten minutes at exit
            spark.spark_session.stop()
        SERVER.stop()
        COLD_SERVER.stop()


def bench(args: argparse.Namespace, spark: SparkDeltaResource) -> None:

    root = state_dir() / "bench" / "curated"
    shutil.rmtree(root, ignore_errors=True)
    lake = LakeResource(base_uri=str(root / "lake"))
    config = GeneratorConfig(days=args.days, customers=args.customers)
    records = generate(lake, config, progress=False).total_records
    first, last = config.start, config.start + timedelta(days=config.days - 1)
    raw_seconds = run_assets(lake, spark, first, last, "raw")
    if args.per_table:
        per_table(root, lake, spark, first, last, args.rounds)
        shutil.rmtree(root, ignore_errors=True)
        return
    if args.scale:
        scale(root, lake, spark, first, last, records, args.rounds)
        shutil.rmtree(root, ignore_errors=True)
        return
    cold = {side: cold_pass(side, root, first, last, args.connect) for side in SIDES}
    (base_seconds, base_cpu), (curated_seconds, curated_cpu) = cold["baseline"], cold["curated"]

    print(f"raw records: {records:,} over {config.days} days, {len(config.tenants)} tenants")
    print(f"raw:      {raw_seconds:7.1f} s  (the raw assets' stock-taking: manifests, drift)")
    print(f"cold, each side in a fresh process{' and Spark Connect server' if args.connect else ''}:")
    print(
        f"baseline: {base_seconds:7.1f} s  {records / base_seconds:10,.0f} records/s  (read NDJSON.gz, write Delta, no logic){base_cpu}"
    )
    print(
        f"curated:  {curated_seconds:7.1f} s  {records / curated_seconds:10,.0f} records/s  (every curated asset, one run){curated_cpu}"
    )
    print(
        f"cold ratio curated/baseline throughput: {base_seconds / curated_seconds:.2f} "
        f"(with the raw stock-taking: {base_seconds / (raw_seconds + curated_seconds):.2f})",
        flush=True,
    )
    ratios = sorted(base / curated for base, curated in warm_rounds(root, lake, spark, first, last, args.rounds))
    print(
        f"warm JVM, median of {args.rounds} rounds: ratio {statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})",
        flush=True,
    )
    for days in (1, 30):
        per_day, seconds = incremental_cost(root, spark, days, args.incremental_customers, args.rounds)
        print(
            f"one incremental partition after {days:2d} days of history: first run {seconds[0]:5.1f} s, median of "
            f"{len(seconds)} {statistics.median(seconds):5.1f} s (runs {', '.join(f'{run:.1f}' for run in seconds)}; "
            f"~{per_day:,} records a day, {args.incremental_customers:,} customers)",
            flush=True,
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
