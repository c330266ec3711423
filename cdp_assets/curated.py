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
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StructType

from cdp_assets.curated_checks import StoredTable, check_specs, run_checks, statistics_columns
from cdp_assets.raw import read_manifest
from cdp_assets.table_pool import run_in_dependency_order
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY
from cdp_resources.spark import SparkDeltaResource, delta_table_name
from cdp_transform.enrich import read_company_references
from cdp_transform.entities import ENTITIES, EntitySpec
from cdp_transform.lineage import CARRIED, CARRIED_SCHEMA, RunLineage
from cdp_transform.local_frame import local_frame
from cdp_transform.pipeline import DEAD_LETTER_COLUMNS, DayStats, curate, partition_stats, split
from partitions import daily_partitions

CURATED_OWNERS = ["team:data-platform"]
DEAD_LETTERS = "curated/_dead_letters"
DEAD_LETTER_FILTER_COLUMNS = ["tenant_id", "rule"]
DEAD_LETTER_DICTIONARY_COLUMNS = [c for c in DEAD_LETTER_COLUMNS if c != "record"]


def critical_threshold() -> float:
    return float(os.environ.get("CDP_CRITICAL_THRESHOLD", "0.25"))


def curated_key(table: str) -> AssetKey:
    return AssetKey(["curated", table])


def dead_letter_table(table: str) -> str:
    """The lake path of curated `table`'s dead letters: a Delta table of its own, so no asset
    writes a table another one writes (a shared one cost every asset a rebuild of its snapshot,
    1.5-2 s, after each other asset's commit, and concurrent writers would conflict)."""
    return f"{DEAD_LETTERS}/{table}"


def read_dead_letters(spark: SparkSession, lake: LakeResource, tables: list[str] | None = None) -> DataFrame | None:
    """The dead letters of `tables` (default: every curated table) in one frame; None when none
    of them has a dead-letter table yet (the first run with a dead letter creates it)."""
    paths = [dead_letter_table(t) for t in tables or [spec.table for spec in ENTITIES]]
    frames = [spark.read.format("delta").load(lake.spark_path(p)) for p in paths if lake.is_delta_table(p)]
    return functools.reduce(DataFrame.unionByName, frames) if frames else None


# What java.net.URI leaves unquoted in a path besides letters, digits and "_.-~" (which Python's
# `quote` never quotes); Unicode letters outside ASCII it leaves too.
_URI_PATH_SAFE = "/@!*'(),;:$&+="
_URI_QUOTED_CATEGORIES = {"Cc", "Zs", "Zl", "Zp"}  # control and space characters
_GLOB_CHARACTERS = re.compile(r"([\\{}\[\]*?])")  # what Hadoop reads as a pattern in a path


def uri_quoted(tail: str) -> str:
    """A raw file's path tail as Spark gives it in `input_file_name()`: its Hadoop Path's URI, where
    a space or `%` in a tenant id is percent-encoded."""
    return "".join(
        c if ord(c) > 127 and unicodedata.category(c) not in _URI_QUOTED_CATEGORIES else quote(c, safe=_URI_PATH_SAFE)
        for c in tail
    )


def literal_path(path: str) -> str:
    """`path` with Hadoop's glob characters escaped, so that Spark reads the file of exactly that
    name: a tenant id such as `b[ae]ta` would otherwise be a pattern, matching other tenants' files."""
    return _GLOB_CHARACTERS.sub(r"\\\1", path)


def raw_file_lineage(session: SparkSession, files: tuple[str, ...]) -> DataFrame:
    """Per raw file, keyed by the last seven segments of its path (`tenant/provider/stream/year=…/
    month=…/day=…/name`) as Spark names them (`uri_quoted`): `_file`, its index in `files`,
    tenant_id and event_date from the layout, _ingest_ts from the flush time in its name. Parsed
    once per file here, not once per record in Spark."""
    rows = []
    for index, path in enumerate(files):
        tail = "/".join(path.split("/")[-7:])
        key = RAW_KEY.match(f"raw/{tail}")
        rows.append(
            (
                uri_quoted(tail),
                key["tenant"],
                date(int(key["year"]), int(key["month"]), int(key["day"])),
                index,
                datetime.strptime(key["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
            )
        )
    return local_frame(session, rows, f"_file_tail string, {CARRIED_SCHEMA}")


def read_raw(session: SparkSession, spec: EntitySpec, lineage: RunLineage) -> DataFrame:
    """The raw files of `lineage` as rows of the spec's read schema, with the carried lineage
    columns (`cdp_transform.lineage.CARRIED`, from `raw_file_lineage`); none when no files. The
    file is named by `input_file_name()`, not the `_metadata.file_path` column: the scan copies
    every row once more to add `_metadata` (events' read took about 15% more task time)."""
    if not lineage.files:
        return session.createDataFrame([], f"{spec.read_schema}, {CARRIED_SCHEMA}")
    frame = session.read.schema(spec.read_schema).json([literal_path(path) for path in lineage.files])
    tail = F.substring_index(F.input_file_name(), "/", -7).alias("_file_tail")
    return (
        frame.select("*", tail)
        .join(F.broadcast(raw_file_lineage(session, lineage.files)), "_file_tail")
        .select(*frame.columns, *CARRIED)
    )


def replace_partitions(
    frame: DataFrame,
    path: str,
    column: str,
    first: date,
    last: date,
    stats_columns: list[str] | None = None,
    dictionary_columns: list[str] | None = None,
) -> None:
    """Overwrite the date partitions first..last of the Delta table at `path` in one transaction
    (the first one creates the table). Table settings, kept for every later write (OPTIMIZE too):
    `stats_columns`, the only columns Delta keeps statistics on (data skipping, Z-order; the
    default, the first 32 columns, costs the write about half again); `dictionary_columns`, the
    only flat columns Parquet dictionary-encodes (default: all): building dictionaries that
    overflow and are dropped, for ids, timestamps and amounts, took about an eighth of the
    curated job's CPU. Through SQL's CREATE TABLE AS SELECT and the DataFrame writer only, not
    Delta's Python API, so that it runs on Spark Connect too."""
    try:
        # Refused before any row is computed when the table exists (tens of milliseconds).
        _create_table(frame, path, column, first, last, stats_columns, dictionary_columns)
        return
    except AnalysisException as error:
        # The table exists (or a log directory without commits, its files deleted, is there):
        # replace the partitions.
        if error.getCondition() != "TABLE_OR_VIEW_ALREADY_EXISTS":
            raise
    condition = f"{column} >= '{first}' AND {column} <= '{last}'"
    writer = frame.write.format("delta").mode("overwrite").partitionBy(column).option("replaceWhere", condition)
    if stats_columns:  # a table property only if this write creates the table
        writer = writer.option("delta.dataSkippingStatsColumns", ",".join(stats_columns))
    writer.save(path)


def _create_table(
    frame: DataFrame,
    path: str,
    column: str,
    first: date,
    last: date,
    stats_columns: list[str] | None,
    dictionary_columns: list[str] | None,
) -> None:
    """A new table at `path`, partitioned by `column`, with its settings as table properties, made
    with its first rows in one transaction (CREATE TABLE AS SELECT). Rows outside first..last fail
    the write, as `replaceWhere` makes them fail on an existing table."""
    in_range = F.col(column).between(F.lit(first), F.lit(last))
    checked = frame.withColumn(
        column,
        F.when(in_range, F.col(column)).otherwise(
            F.raise_error(F.format_string(f"{column} %s is outside {first}..{last}", F.col(column).cast("string")))
        ),
    )
    writer = checked.writeTo(delta_table_name(path)).using("delta").partitionedBy(F.col(column))
    if stats_columns:
        writer = writer.tableProperty("delta.dataSkippingStatsColumns", ",".join(stats_columns))
    if dictionary_columns is not None:
        flat = [f.name for f in frame.schema.fields if not isinstance(f.dataType, ArrayType | MapType | StructType)]
        for name in (n for n in flat if n not in dictionary_columns):
            writer = writer.tableProperty(f"parquet.enable.dictionary#{name}", "false")
    writer.create()


def may_hold_dead_letters(lake: LakeResource, table: str, first: date, last: date) -> bool:
    """Whether `table`'s dead-letter table may hold rows of days first..last: a file lies under one
    of those partitions' directories (Delta writes a partition's files there). A lake listing, no
    Delta snapshot (1.5-2 s a table); a removed file not yet vacuumed only costs an empty replace."""
    days = {f"event_date={first + timedelta(days=offset)}" for offset in range((last - first).days + 1)}
    return any(o.key.split("/")[-2] in days for o in lake.list(f"{dead_letter_table(table)}/event_date="))


def raw_files_for(
    lake: LakeResource, provider: str, stream: str, first: date, last: date
) -> tuple[list[str], list[str], int]:
    """Spark paths of the readable raw files of days first..last as their manifests list them, the
    keys of damaged ones (left out; the raw asset reports them) and the readable files' bytes."""
    paths, damaged, size = [], [], 0
    for offset in range((last - first).days + 1):
        manifest = read_manifest(lake, provider, stream, (first + timedelta(days=offset)).isoformat())
        for entry in manifest["files"] if manifest else []:
            if "error" in entry:
                damaged.append(entry["key"])
            else:
                paths.append(lake.spark_path(entry["key"]))
                size += entry["bytes"]
    return paths, damaged, size


def read_table(spark: SparkSession, lake: LakeResource, table: str, first: date | None, last: date) -> DataFrame | None:
    """Rows of curated `table` with event_date in first..last (from the beginning when first is None)."""
    path = lake.spark_path(f"curated/{table}")
    if not lake.is_delta_table(f"curated/{table}"):
        return None
    rows = spark.read.format("delta").load(path).where(F.col("event_date") <= F.lit(last))
    return rows if first is None else rows.where(F.col("event_date") >= F.lit(first))


def preview(frame: DataFrame, columns: list[str], rows: int = 5) -> MetadataValue:
    sample = frame.select(*columns).limit(rows).collect()
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(str(row[c]) for c in columns) + " |\n" for row in sample)
    return MetadataValue.md(header + body)


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
            StoredTable.at(session, lake, key) for key in (f"curated/{spec.table}", dead_letter_table(spec.table))
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
    deps = [AssetKey(["raw", spec.provider, spec.stream])]
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
            read_table(session, lake, "fx_rates", first, last)
            or session.createDataFrame([], "event_date date, currency string, rate double")
        )
        if spec.needs_fx
        else None
    )
    customers = read_table(session, lake, "shopify_customers", None, last) if spec.customer_must_exist else None
    companies = read_company_references(session, lake) if spec.company_from else None
    earlier = read_table(session, lake, spec.table, None, first - timedelta(days=1)) if spec.email_unique_per else None
    # Kept once, as the rows were computed (no columnar encoding, never recomputed), for the
    # counts, both writes and the preview: the events' counts job took 13 s with .cache(), 7 s so.
    # Serialised (PySpark's MEMORY_AND_DISK; the JVM default keeps a million row objects, which
    # the collector copied: GC 5.2 -> 3.1 s in the counts job, the events' write 7.1 -> 5.4 s).
    lineage = RunLineage(spec.provider, run_id, tuple(sorted(files)))
    ruled = curate(spec, read_raw(session, spec, lineage), fx, customers, earlier, companies).localCheckpoint(
        eager=False, storageLevel=StorageLevel.MEMORY_AND_DISK
    )
    stats = partition_stats(spec, ruled)
    _enforce_threshold(spec, stats)
    curated, dead = split(spec, ruled, lineage)
    table_path = lake.spark_path(f"curated/{spec.table}")
    replace_partitions(
        curated,
        table_path,
        "event_date",
        first,
        last,
        stats_columns=statistics_columns(spec),
        dictionary_columns=spec.dictionary_columns,
    )
    # A day without dead letters, that had none before either, leaves the dead-letter table as
    # it is: no empty transaction (0.7-1.8 s each) for every clean table of every run.
    if any(s.dead_lettered for s in stats.values()) or may_hold_dead_letters(lake, spec.table, first, last):
        replace_partitions(
            dead.select(*DEAD_LETTER_COLUMNS),
            lake.spark_path(dead_letter_table(spec.table)),
            "event_date",
            first,
            last,
            stats_columns=DEAD_LETTER_FILTER_COLUMNS,
            dictionary_columns=DEAD_LETTER_DICTIONARY_COLUMNS,
        )
    metadata = _metadata(spec, stats, curated, files, damaged, table_path, first, last)
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


@multi_asset(
    name="curated_tables",
    specs=[_asset_spec(spec) for spec in ENTITIES],
    check_specs=[check for spec in ENTITIES for check in check_specs(spec, curated_key(spec.table))],
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
    session: SparkSession = spark.session_for(lake)
    checks: dict[str, tuple[str, ...]] = {}
    for check in context.selected_asset_check_keys:
        checks[check.asset_key.path[-1]] = (*checks.get(check.asset_key.path[-1], ()), check.name)
    selected = [spec for spec in ENTITIES if curated_key(spec.table) in context.selected_asset_keys]
    for spec in (s for s in ENTITIES if s.table in checks and s not in selected):
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
    upstream = {spec.table: {key.path[-1] for key in _upstream(spec) if key.path[0] == "curated"} for spec in ENTITIES}
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
