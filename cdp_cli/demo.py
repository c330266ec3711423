"""The main job on the embedded defaults: generate sample data, then materialise every partition
and print where the results are, down to each segment's audience export.

The terminal shows one line per finished step and the summary; everything else the run writes
(Dagster's, dbt's and Spark's logs, which would be hundreds of lines) goes to a log file under
`.cdp/logs/`, named on the terminal.
"""

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from dagster import DagsterEventType, DagsterInstance, ExecuteInProcessResult, JobDefinition

from cdp_resources.lake import LakeResource
from cdp_resources.settings import state_dir
from cdp_sampledata.generator import GeneratorConfig, generate
from partitions import range_tags

DERIVED_ZONES = ("curated/", "identity/", "profiles/")
STEP_ENDS = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}


def demo_log_path() -> Path:
    """A new log file under `.cdp/logs/`, named by the time it starts."""
    folder = state_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"


@contextmanager
def output_to(log_path: Path) -> Iterator[TextIO]:
    """Sends this process's stdout and stderr to `log_path`, at the file-descriptor level so that the
    Spark JVM and the dbt processes started meanwhile (which inherit the descriptors) write there too;
    yields a stream to the terminal's stdout. The descriptors are restored on exit, though a JVM started
    inside keeps writing to the log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:  # Python's own streams too, for when they are not descriptors 1 and 2 (as under pytest)
        with (
            open(log_path, "a", buffering=1) as text,
            redirect_stdout(text),
            redirect_stderr(text),
            os.fdopen(os.dup(saved[0]), "w", buffering=1) as terminal,
        ):
            yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)
            os.close(original)


def step_line(done: int, total: int, step: str, seconds: float | None) -> str:
    took = f"{seconds:7.1f}s" if seconds is not None else " FAILED"
    return f"  [{done:>{len(str(total))}}/{total}] {step:<48} {took}"


def _report_steps(instance: DagsterInstance, run_id: str, total: int, terminal: TextIO, stop: threading.Event):
    """Prints a line for every step of the run that ends, reading the run's events until `stop` is set."""
    cursor, done = None, 0
    while True:
        finishing = stop.is_set()  # read once more after the run ended: its last steps' events
        records = instance.get_records_for_run(run_id, cursor=cursor, of_type=STEP_ENDS)
        cursor = records.cursor
        for record in records.records:
            event = record.event_log_entry.dagster_event
            done += 1
            success = event.event_type == DagsterEventType.STEP_SUCCESS
            seconds = event.event_specific_data.duration_ms / 1000 if success else None
            print(step_line(done, total, event.step_key, seconds), file=terminal)
        if finishing:
            return
        stop.wait(1)


def execute_with_progress(
    job: JobDefinition, instance: DagsterInstance, tags: dict[str, str], log_path: Path
) -> ExecuteInProcessResult:
    """Runs `job` in this process with its output in `log_path`, printing one line per finished step."""
    run_id = str(uuid.uuid4())
    stop = threading.Event()
    with output_to(log_path) as terminal:
        reporter = threading.Thread(
            target=_report_steps, args=(instance, run_id, len(job.graph.nodes), terminal, stop), daemon=True
        )
        reporter.start()
        try:
            return job.execute_in_process(instance=instance, tags=tags, run_id=run_id, raise_on_error=False)
        finally:
            stop.set()
            reporter.join()


def sample_is_current(lake: LakeResource, config: GeneratorConfig) -> bool:
    """True when the lake already holds the sample data of exactly this configuration."""
    if not lake.list("truth/manifest.json"):
        return False
    written = json.loads(lake.read_bytes("truth/manifest.json"))["config"]
    return (
        written["seed"] == config.seed
        and written["days"] == config.days
        and written["customers"] == config.customers
        and written["tenants"] == list(config.tenants)
        and written["start"] == config.start.isoformat()
    )


def run_demo(config: GeneratorConfig, workers: int, log_path: Path) -> dict:
    """Generate (unless already there) and materialise `lake_daily` over every generated day, its
    output in `log_path`."""
    from cdp_assets.definitions import defs

    lake = defs.resources["lake"]
    if not sample_is_current(lake, config):
        summary = generate(lake, config, workers=workers)
        print(f"generated {summary.total_records:,} records in {summary.files} files ({summary.seconds:.1f}s)")
    for (
        zone
    ) in DERIVED_ZONES:  # rebuilt from the raw zone every time, so tables of an older version never get in the way
        for obj in lake.list(zone):
            lake.delete(obj.key)
    first = config.start
    last = config.start + timedelta(days=config.days - 1)
    job = defs.resolve_job_def("lake_daily")
    print(f"materialising lake_daily for {first} … {last} in one run; its full log: {log_path}", flush=True)
    result = execute_with_progress(
        job, DagsterInstance.get(), range_tags(first.isoformat(), last.isoformat()), log_path
    )
    return {
        "run_id": result.run_id,
        "success": result.success,
        "first": first,
        "last": last,
        "lake": lake,
        "log": log_path,
    }


def accuracy_lines(lake: LakeResource) -> list[str]:
    """Identity resolution in the lake against its ground truth, as printable lines."""
    from cdp_identity.accuracy import pair_accuracy, profile_kinds
    from cdp_resources.lake_paths import MAP
    from cdp_resources.spark import SparkDeltaResource

    if not lake.list(f"{MAP}/_delta_log/"):
        return [f"no identity map in {lake.spark_path(MAP)}: materialise identity/customer_ids first"]
    spark = SparkDeltaResource().session_for(lake)
    identity_map = spark.read.format("delta").load(lake.spark_path(MAP))
    score, kinds = pair_accuracy(spark, lake, identity_map), profile_kinds(spark, lake, identity_map)
    return [
        f"identity:          {score['profiles']:,} profiles: {kinds['people']:,} of the {score['persons']:,} people "
        f"in the truth, {kinds['anonymous']:,} anonymous visitors (an anonymous id only), "
        f"{kinds['unowned']:,} of identifiers no one person has",
        f"                   pair precision {score['pair_precision']:.4f}, pair recall {score['pair_recall']:.4f} "
        f"({score['correct_pairs']:,} of {score['predicted_pairs']:,} predicted pairs right, "
        f"{score['true_pairs']:,} true pairs)",
    ]


def segment_lines(as_of: date) -> list[str]:
    """Members per segment and tenant in segments.segment_membership as of `as_of`, as printable lines."""
    from cdp_assets.dbt import MEMBERSHIP
    from cdp_resources.warehouse import WarehouseResource

    with WarehouseResource().connect() as conn:
        rows = conn.execute(
            f"SELECT segment, tenant_id, count(*) FROM {MEMBERSHIP} WHERE as_of_date = %s GROUP BY 1, 2 ORDER BY 1, 2",
            (as_of,),
        ).fetchall()
    by_segment: dict[str, list[str]] = {}
    for segment, tenant, members in rows:
        by_segment.setdefault(segment, []).append(f"{tenant} {members:,}")
    return [
        f"segments as of {as_of} ({MEMBERSHIP}, {len(by_segment)} segments):",
        *(f"  {segment:<32} {', '.join(counts)}" for segment, counts in by_segment.items()),
    ]


def audience_lines(lake: LakeResource, as_of: date) -> list[str]:
    """Members, additions and removals of every audience exported for `as_of`, as printable lines."""
    from cdp_activation.audiences import ROOT

    suffix = f"/date={as_of.isoformat()}/_manifest.json"
    manifests = [json.loads(lake.read_bytes(obj.key)) for obj in lake.list(f"{ROOT}/") if obj.key.endswith(suffix)]
    by_segment: dict[str, list[str]] = {}
    for m in sorted(manifests, key=lambda m: (m["segment"], m["tenant"])):
        by_segment.setdefault(m["segment"], []).append(
            f"{m['tenant']} {m['members']:,} members (+{m['added']:,} -{m['removed']:,})"
        )
    return [
        f"audiences as of {as_of} ({lake.spark_path(ROOT + '/')}, {sum(len(m['files']) for m in manifests)} "
        f"Parquet files, {len(by_segment)} segments; + added, - removed since the previous export):",
        *(f"  {segment:<32} {', '.join(counts)}" for segment, counts in by_segment.items()),
    ]


def describe(outcome: dict) -> str:
    lake: LakeResource = outcome["lake"]
    return "\n".join(
        [
            f"run {outcome['run_id']}: {'succeeded' if outcome['success'] else 'FAILED'}"
            + (f" (full log: {outcome['log']})" if outcome.get("log") else ""),
            f"raw zone:          {lake.spark_path('raw/')}",
            f"curated tables:    {lake.spark_path('curated/')} (Delta; dead letters in curated/_dead_letters/{{table}})",
            f"identity, profiles: {lake.spark_path('identity/')}, {lake.spark_path('profiles/')} (Delta)",
            *(accuracy_lines(lake) if outcome["success"] else []),
            "warehouse:         PostgreSQL schemas raw_cdp (loaded tables), staging, intermediate, marts, segments (dbt)",
            *(segment_lines(outcome["last"]) if outcome["success"] else []),
            *(audience_lines(lake, outcome["last"]) if outcome["success"] else []),
            "dbt docs:          .venv/bin/cdp dbt docs   (then http://127.0.0.1:8080)",
            f"ground truth:      {lake.spark_path('truth/')}",
            "open the UI:       make dev   (then http://127.0.0.1:3000)",
        ]
    )


def default_demo_config(start: date) -> GeneratorConfig:
    return GeneratorConfig(tenants=("acme_corp", "globex"), days=7, customers=2_000, seed=42, start=start)
