"""`cdp backfill`: onboard history as one run of `lake_daily` over a range of days (Dagster's
single-run backfill, as `cdp demo` runs it), with a progress view and a summary.

Dagster writes its bookkeeping one event and one commit at a time, which at years of daily
partitions outweighs the work. This run turns on two of Dagster's own switches, in this process
only, so the sensor's and the schedule's runs behave as before:

- `DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`: one ASSET_MATERIALIZATION_PLANNED event per
  asset holding the range, not one per asset and day (dagster-io/dagster#29288, #32242). The price
  Dagster names: if the run fails, its days show as missing in the UI, not as failed.
- `DAGSTER_EVENT_BATCH_SIZE`: an asset's materialisations of the range's days are stored in
  batches (one INSERT and one transaction each) instead of one commit per day
  (dagster-io/dagster#19829). The UI shows every day as materialised either way.
"""

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date

from dagster import DagsterEventType, DagsterInstance, PartitionKeyRange

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "cdp/backfill"
JOB = "lake_daily"
EVENT_BATCH_SIZE = 1000  # materialisations per INSERT: a few hundred KB of serialised events
BOOKKEEPING_SWITCHES = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": str(EVENT_BATCH_SIZE),
}
STEP_ENDS = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED}


class BackfillRangeError(ValueError):
    pass


@dataclass
class Progress:
    """What the run's event log says so far."""

    steps_total: int = 0
    steps_done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    current: str | None = None

    def line(self, elapsed: float) -> str:
        doing = f"running {self.current}" if self.current else "planning the run"
        return f"[{elapsed:7.1f}s] steps {len(self.steps_done)}/{self.steps_total or '?'} done; {doing}"


def check_range(first: date, last: date) -> None:
    """A clear error for a range the daily partitions do not hold."""
    from partitions import daily_partitions, start_date

    if last < first:
        raise BackfillRangeError(f"--to {last} is before --from {first}")
    if first.isoformat() < start_date():
        raise BackfillRangeError(
            f"--from {first} is before the first daily partition ({start_date()}): set CDP_START_DATE={first} "
            "(for `cdp dev` and the daemon too, so the UI shows those days)"
        )
    newest = daily_partitions.get_last_partition_key()
    if newest is None or last.isoformat() > newest:
        raise BackfillRangeError(f"--to {last} is after the last complete day ({newest})")


def read_progress(instance: DagsterInstance, run_id: str) -> Progress:
    progress = Progress()
    run = instance.get_run_by_id(run_id)
    if run and run.execution_plan_snapshot_id:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        progress.steps_total = len(plan.steps)
    started: list[str] = []
    records = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_START, *STEP_ENDS}, limit=10_000
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.event_type == DagsterEventType.STEP_START:
            started.append(event.step_key)
        else:
            progress.steps_done.append(event.step_key)
            if event.event_type == DagsterEventType.STEP_FAILURE:
                progress.failed.append(event.step_key)
    running = [key for key in started if key not in progress.steps_done]
    progress.current = running[-1] if running else None
    return progress


def _find_run(instance: DagsterInstance, backfill_id: str) -> str | None:
    from dagster import RunsFilter

    runs = instance.get_runs(RunsFilter(tags={BACKFILL_TAG: backfill_id}), limit=1)
    return runs[0].run_id if runs else None


def _watch(instance: DagsterInstance, backfill_id: str, started: float, done: threading.Event, every: float) -> None:
    """Print a progress line every `every` seconds until `done`."""
    while not done.wait(every):
        run_id = _find_run(instance, backfill_id)
        progress = read_progress(instance, run_id) if run_id else Progress()
        print(progress.line(time.monotonic() - started), flush=True)


def run_backfill(first: date, last: date, instance: DagsterInstance, every: float = 10.0, defs=None):
    """Materialise `lake_daily` for first..last in one run, printing progress every `every` seconds
    (0: silent); returns the run's result."""
    from cdp_assets.definitions import defs as project_defs

    check_range(first, last)
    os.environ.update(BOOKKEEPING_SWITCHES)
    backfill_id = uuid.uuid4().hex
    started, done = time.monotonic(), threading.Event()
    watcher = None
    if every:
        watcher = threading.Thread(target=_watch, args=(instance, backfill_id, started, done, every), daemon=True)
        watcher.start()
    try:
        return (
            (defs or project_defs)
            .resolve_job_def(JOB)
            .execute_in_process(
                instance=instance,
                tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat(), BACKFILL_TAG: backfill_id},
                raise_on_error=False,
            )
        )
    finally:
        done.set()
        if watcher:
            watcher.join()


def missing_days(instance: DagsterInstance, first: date, last: date, defs=None) -> dict[str, int]:
    """Per daily-partitioned asset of the job, how many days of first..last the instance does not
    show as materialised (what the UI's partition view reads); empty when every day of every asset is."""
    from cdp_assets.definitions import defs as project_defs
    from partitions import daily_partitions

    days = set(daily_partitions.get_partition_keys_in_range(PartitionKeyRange(first.isoformat(), last.isoformat())))
    layer = (defs or project_defs).resolve_job_def(JOB).asset_layer
    missing = {}
    for key in layer.executable_asset_keys:
        if layer.asset_graph.get(key).partitions_def is None:
            continue
        absent = days - set(instance.get_materialized_partitions(key))
        if absent:
            missing[key.to_user_string()] = len(absent)
    return missing


def summary(result, first: date, last: date, seconds: float, instance: DagsterInstance) -> str:
    failed = [e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    days = (last - first).days + 1
    lines = [
        f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {seconds:.1f}s "
        f"({days:,} days, {first} … {last})"
    ]
    if failed:
        lines.append(f"failed steps: {', '.join(failed)} (the UI shows their days as missing, not failed)")
    missing = missing_days(instance, first, last)
    lines.append(
        "every day of every partitioned asset is materialised"
        if not missing
        else f"days not materialised: {', '.join(f'{k} {n:,}' for k, n in sorted(missing.items()))}"
    )
    return "\n".join(lines)
