"""Curated Delta tables, one asset per entity spec (`cdp_transform/entities.py`), partitioned by
event date (UTC).

Partition D reads the raw files of day D (the edge files every record under its event day, late
ones included), curates them (typing, dedup, normalisation, enrichment, quality rules) and
replaces partition D of the table, and of the table's dead-letter table, in one Delta transaction
each (`replaceWhere`; the dead-letter table only when the day has dead letters now or had them
before): reruns give the same tables, and a failed run leaves the previous version visible. A day
whose share of critical failures passes `CDP_CRITICAL_THRESHOLD` (default 0.25) fails the run,
naming the rule. Historic mode hands a whole range to one run.

All tables are one subsettable multi-asset (`curated_tables`), so a run curates them a few at a time
in its one Spark session (`cdp_assets/table_pool.py`), each after the curated tables it reads, and
runs each table's checks (`cdp_assets/curated_checks.py`) as soon as it is written; run alone, the
checks check the days the table's latest materialisation wrote.
"""

import functools
import os
from collections.abc import Iterator
from datetime import date, timedelta

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_assets.curated_checks import StoredTable, check_specs, run_checks, statistics_columns
from cdp_assets.keys import curated_key, raw_key
from cdp_assets.table_pool import run_in_dependency_order
from cdp_ingest.manifests import raw_files_for
from cdp_resources.delta_tables import read_delta, replace_current_state, replace_partitions
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import curated_path, dead_letter_path
from cdp_resources.previews import preview
from cdp_resources.spark import SparkDeltaResource
from cdp_transform.curated_store import (
    DEAD_LETTER_DICTIONARY_COLUMNS,
    DEAD_LETTER_FILTER_COLUMNS,
    may_hold_dead_letters,
    read_curated,
)
from cdp_transform.current_state import STORED, supersede, superseded_stored
from cdp_transform.enrich import read_company_references
from cdp_transform.entities import EntitySpec
from cdp_transform.generic import CURATED_ENTITIES
from cdp_transform.lineage import RunLineage
from cdp_transform.pipeline import DEAD_LETTER_COLUMNS, DayStats, curate, partition_stats, split
from cdp_transform.raw_reader import read_raw
from partitions import daily_partitions

CURATED_OWNERS = ["team:data-platform"]


def critical_threshold() -> float:
    return float(os.environ.get("CDP_CRITICAL_THRESHOLD", "0.25"))


def _enforce_threshold(spec: EntitySpec, stats: dict[str, DayStats]) -> None:
    limit = critical_threshold()
    for day, day_stats in sorted(stats.items()):
        if day_stats.rows_after_dedup and day_stats.dead_lettered / day_stats.rows_after_dedup > limit:
            rule, count = max(day_stats.critical.items(), key=lambda item: item[1])
            reason = next(r.reason for r in spec.rules if r.name == rule)
            raise Failure(
                f"{spec.table} {day}: {day_stats.dead_lettered / day_stats.rows_after_dedup:.1%} of rows failed critical "
                f"rules (threshold {limit:.0%}); most failed: {rule} ({count} rows: {reason})"
            )


def _metadata(
    spec: EntitySpec,
    stats: dict[str, DayStats],
    curated: DataFrame,
    files: list[str],
    damaged: list[str],
    table_path: str,
    first: date,
    last: date,
) -> dict:
    total = DayStats()
    dead_by_rule, warnings = {}, {}
    for day_stats in stats.values():
        total.rows_in += day_stats.rows_in
        total.rows_after_dedup += day_stats.rows_after_dedup
        total.dead_lettered += day_stats.dead_lettered
        total.with_warnings += day_stats.with_warnings
        total.superseded += day_stats.superseded
        for rule, count in day_stats.critical.items():
            dead_by_rule[rule] = dead_by_rule.get(rule, 0) + count
        for rule, count in day_stats.warnings.items():
            warnings[rule] = warnings.get(rule, 0) + count
    passing = total.rows_after_dedup - total.dead_lettered - total.with_warnings
    return {
        "dagster/row_count": total.curated,
        "rows_in": total.rows_in,
        "duplicates_removed": total.duplicates,
        "dead_lettered": total.dead_lettered,
        "dead_lettered_by_rule": MetadataValue.json(dict(sorted(dead_by_rule.items()))),
        "warnings_by_rule": MetadataValue.json(dict(sorted(warnings.items()))),
        "quality_score": MetadataValue.float(
            round(passing / total.rows_after_dedup, 4) if total.rows_after_dedup else 1.0
        ),
        "per_day": MetadataValue.json(
            {
                day: {
                    "rows_in": s.rows_in,
                    "duplicates": s.duplicates,
                    **({"superseded": s.superseded} if spec.current_state else {}),
                    "dead_lettered": s.dead_lettered,
                    "curated": s.curated,
                }
                for day, s in sorted(stats.items())
            }
        ),
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "raw_files_read": len(files),
        "damaged_raw_files_skipped": len(damaged),
        "table_path": MetadataValue.path(table_path),
        "preview": preview(curated, ["tenant_id", "event_date", *[f.name for f in spec.fields][:5]]),
    }


def _run_checks(
    spec: EntitySpec,
    checks: tuple[str, ...],
    session: SparkSession,
    lake: LakeResource,
    first: date,
    last: date,
    per_day: dict,
) -> list[AssetCheckResult]:
    """The results of `checks` (names) of `spec`'s table on its days first..last, as the lake holds
    them. Checks that cannot run (mostly: cannot read the table) fail, naming the error, rather
    than raise: in the run that wrote the table, its materialisation is still reported."""
    if not checks:
        return []
    try:
        table, dead_letters = (
            StoredTable.at(session, lake, key) for key in (curated_path(spec.table), dead_letter_path(spec.table))
        )
        return run_checks(spec, curated_key(spec.table), checks, table, dead_letters, lake, first, last, per_day)
    except Exception as error:  # any reader's error: Spark's, delta-rs's, the lake's
        reason = f"the checks could not run: {type(error).__name__}: {error}"[:2000]
        return [
            AssetCheckResult(
                asset_key=curated_key(spec.table), check_name=name, passed=False, metadata={"error": reason}
            )
            for name in checks
        ]


def checks_of_last_materialisation(
    context: AssetExecutionContext, spec: EntitySpec, checks: tuple[str, ...], session: SparkSession, lake: LakeResource
) -> list[AssetCheckResult]:
    """`checks` run alone (the table not materialised in this run): on the days the table's latest
    materialisation wrote; passed, with nothing checked, when it has none."""
    event = context.instance.get_latest_materialization_event(curated_key(spec.table))
    if event is None:
        return [
            AssetCheckResult(
                asset_key=curated_key(spec.table), check_name=name, passed=True, metadata={"days_checked": 0}
            )
            for name in checks
        ]
    metadata = event.asset_materialization.metadata
    first, last = date.fromisoformat(metadata["first_day"].value), date.fromisoformat(metadata["last_day"].value)
    return _run_checks(spec, checks, session, lake, first, last, metadata["per_day"].value)


def _upstream(spec: EntitySpec) -> list[AssetKey]:
    deps = [raw_key(spec.provider, spec.stream)]
    if spec.needs_fx:
        deps.append(curated_key("fx_rates"))
    if spec.customer_must_exist:
        deps.append(curated_key("shopify_customers"))
    return deps


def curated_workers() -> int:
    """Tables curated at once in one run (`CDP_CURATED_WORKERS`, default 2)."""
    return int(os.environ.get("CDP_CURATED_WORKERS", "2"))


def curate_table(
    spec: EntitySpec,
    lake: LakeResource,
    session: SparkSession,
    run_id: str,
    first: date,
    last: date,
    files: list[str],
    damaged: list[str],
    checks: tuple[str, ...] = (),
) -> MaterializeResult:
    """Curates the raw `files` of days first..last into `spec`'s table and dead-letter table, then
    runs its `checks` (names) on what was written."""
    fx = (
        (
            read_curated(session, lake, "fx_rates", first, last)
            or session.createDataFrame([], "event_date date, currency string, rate double")
        )
        if spec.needs_fx
        else None
    )
    customers = read_curated(session, lake, "shopify_customers", None, last) if spec.customer_must_exist else None
    companies = read_company_references(session, lake) if spec.company_from else None
    earlier = (
        read_curated(session, lake, spec.table, None, first - timedelta(days=1)) if spec.email_unique_per else None
    )
    # Kept once, as the rows were computed (no columnar encoding, never recomputed), for the
    # counts, both writes and the preview; serialised (PySpark's MEMORY_AND_DISK), as the JVM
    # default keeps row objects the collector must copy (figures: docs/performance.md).
    lineage = RunLineage(spec.provider, run_id, tuple(sorted(files)))
    ruled = curate(spec, read_raw(session, spec, lineage), fx, customers, earlier, companies)
    others = None
    if spec.current_state:
        # The stored rows of the other days: a key's newer (or older) version may be there.
        stored = read_delta(session, lake, curated_path(spec.table))
        others = None if stored is None else stored.where(~F.col("event_date").between(F.lit(first), F.lit(last)))
        ruled = supersede(spec, ruled, lineage, others)
    ruled = ruled.localCheckpoint(eager=False, storageLevel=StorageLevel.MEMORY_AND_DISK)
    removed = {}
    if spec.current_state:
        removed = superseded_stored(ruled) if others is not None else {}
        ruled = ruled.where(~F.col(STORED))
    stats = partition_stats(spec, ruled)
    _enforce_threshold(spec, stats)
    curated, dead = split(spec, ruled, lineage)
    table_path = lake.spark_path(curated_path(spec.table))
    settings = {"stats_columns": statistics_columns(spec), "dictionary_columns": spec.dictionary_columns}
    if spec.current_state:
        replace_current_state(curated, table_path, "event_date", first, last, spec.key, **settings)
    else:
        replace_partitions(curated, table_path, "event_date", first, last, **settings)
    # A day without dead letters, that had none before either, leaves the dead-letter table as
    # it is: no empty Delta transaction for every clean table of every run.
    if any(s.dead_lettered for s in stats.values()) or may_hold_dead_letters(lake, spec.table, first, last):
        replace_partitions(
            dead.select(*DEAD_LETTER_COLUMNS),
            lake.spark_path(dead_letter_path(spec.table)),
            "event_date",
            first,
            last,
            stats_columns=DEAD_LETTER_FILTER_COLUMNS,
            dictionary_columns=DEAD_LETTER_DICTIONARY_COLUMNS,
        )
    metadata = _metadata(spec, stats, curated, files, damaged, table_path, first, last)
    if spec.current_state:
        metadata["superseded"] = sum(s.superseded for s in stats.values())  # counted in duplicates_removed too
        metadata["superseded_in_other_days"] = MetadataValue.json(removed)
    return MaterializeResult(
        asset_key=curated_key(spec.table),
        metadata=metadata,
        check_results=_run_checks(spec, checks, session, lake, first, last, metadata["per_day"].value),
    )


def _asset_spec(spec: EntitySpec) -> AssetSpec:
    return AssetSpec(
        curated_key(spec.table),
        group_name="curated",
        owners=CURATED_OWNERS,
        kinds={"spark", "delta"},
        description=spec.description,
        deps=_upstream(spec),
        tags={"layer": "curated"},
        skippable=True,
        metadata={
            "natural_key": ", ".join(spec.key),
            "rules": MetadataValue.json(
                {r.name: {"severity": r.severity, "condition": r.condition} for r in spec.rules}
            ),
        },
    )


def curated_tables_asset(entities: list[EntitySpec]) -> AssetsDefinition:
    """The multi-asset of the curated tables of `entities` (the platform's: `CURATED_ENTITIES`)."""

    @multi_asset(
        name="curated_tables",
        specs=[_asset_spec(spec) for spec in entities],
        check_specs=[check for spec in entities for check in check_specs(spec, curated_key(spec.table))],
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        can_subset=True,
        description="Every selected curated table, CDP_CURATED_WORKERS (default 2) at a time in one Spark session, "
        "each after the curated tables it reads, and its checks as soon as it is written; one failing table "
        "fails the step, not the others.",
    )
    def curated_tables(
        context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource
    ) -> Iterator[MaterializeResult | AssetCheckResult]:
        yield from _curate_selected(context, lake, spark, entities)

    return curated_tables


def _curate_selected(
    context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource, entities: list[EntitySpec]
) -> Iterator[MaterializeResult | AssetCheckResult]:
    session: SparkSession = spark.session_for(lake)
    checks: dict[str, tuple[str, ...]] = {}
    for check in context.selected_asset_check_keys:
        checks[check.asset_key.path[-1]] = (*checks.get(check.asset_key.path[-1], ()), check.name)
    selected = [spec for spec in entities if curated_key(spec.table) in context.selected_asset_keys]
    for spec in (s for s in entities if s.table in checks and s not in selected):
        yield from checks_of_last_materialisation(context, spec, checks[spec.table], session, lake)
    if not selected:
        return
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - timedelta(days=1)
    work, size = {}, {}
    for spec in selected:
        files, damaged, size[spec.table] = raw_files_for(lake, spec.provider, spec.stream, first, last)
        context.log.info(f"{spec.table} {first}..{last}: reading {len(files)} raw files")
        work[spec.table] = functools.partial(
            curate_table, spec, lake, session, context.run_id, first, last, files, damaged, checks.get(spec.table, ())
        )
    # Largest first, so that the run does not end on one big table alone.
    work = dict(sorted(work.items(), key=lambda item: -size[item[0]]))
    upstream = {spec.table: {key.path[-1] for key in _upstream(spec) if key.path[0] == "curated"} for spec in entities}
    failures = []
    # Only this thread logs and yields: the workers touch no Dagster state.
    for table, result, error in run_in_dependency_order(work, upstream, curated_workers()):
        if error is None:
            context.log.info(f"{table}: {result.metadata['dagster/row_count']} rows curated")
            yield result
        else:
            context.log.error(f"{table}: {error}")
            failures.append(f"{table}: {error}")
    if failures:
        raise Failure(f"{len(failures)} of {len(work)} curated tables failed: " + " | ".join(failures))


curated_tables = curated_tables_asset(CURATED_ENTITIES)
