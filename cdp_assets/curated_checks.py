"""The curated tables' asset checks: pandera's schema and reconciliation with the raw records.

They are checks of the `curated_tables` multi-asset (`check_specs`), run in each table's worker as
soon as the table is written, on the table as the lake holds it. Both take its rows per day and the
nulls of the columns pandera requires from the per-file statistics Delta keeps in the table's log
(read by delta-rs: milliseconds, no Spark job; the tables keep statistics on those columns,
`statistics_columns`), and pandera checks the columns and types of the table's Spark frame. A table
whose files lack those statistics (made before they were kept) is counted in one Spark job.
"""

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_ingest.manifests import read_manifest
from cdp_resources.lake import LakeResource
from cdp_transform.entities import EntitySpec
from cdp_transform.quality_schema import null_counts, pandera_schema, required_columns, schema_errors

SCHEMA_CHECK, RECONCILIATION_CHECK = "pandera_schema", "reconciles_with_raw"
DAY = "event_date"  # the curated tables' partition column


def check_specs(spec: EntitySpec, key: AssetKey) -> list[AssetCheckSpec]:
    """The checks of `spec`'s table (asset `key`); pandera's schema blocks what reads the table."""
    specs = [
        AssetCheckSpec(
            SCHEMA_CHECK,
            asset=key,
            blocking=True,
            description=f"pandera: {spec.table}'s columns, types and non-null keys, on the days just written.",
        )
    ]
    if spec.reconciles:
        specs.append(
            AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=key,
                description=(
                    "Per day: raw records (manifests) = curated rows + dead-lettered rows + duplicates removed."
                ),
            )
        )
    return specs


def statistics_columns(spec: EntitySpec) -> list[str]:
    """The columns `spec`'s table keeps Delta statistics on: those queries filter on (data skipping,
    Z-order) and those pandera requires non-null, whose null counts the schema check reads."""
    required = [name for name in required_columns(pandera_schema(spec)) if name != DAY]
    return list(dict.fromkeys([*spec.filter_columns, *required]))


@dataclass(frozen=True)
class StoredTable:
    """A Delta table as the checks read it: its log in delta-rs and its rows in Spark, both at one
    version (both None when there is no table)."""

    rows: DataFrame | None
    log: DeltaTable | None

    @classmethod
    def at(cls, session: SparkSession, lake: LakeResource, key: str) -> "StoredTable":
        """The table at lake `key`, found with one listing of its log."""
        return cls.of(session, lake, key, lake.delta_log(key))

    @classmethod
    def of(cls, session: SparkSession, lake: LakeResource, key: str, log: DeltaTable | None) -> "StoredTable":
        """The table at lake `key` whose `log` has been read: its rows at the log's version, so that
        a commit after the log was read (another run's) cannot give the checks the columns of one
        version and the counts of another."""
        if log is None:
            return cls(None, None)
        return cls(session.read.format("delta").option("versionAsOf", log.version()).load(lake.spark_path(key)), log)


def logged_counts(
    log: DeltaTable, first: date, last: date, columns: list[str]
) -> tuple[dict[str, int], dict[str, int]] | None:
    """Rows per day first..last and the nulls of `columns` in them, summed over the statistics of
    the table's files of those days in its log; None when a file lacks them, or when the table may
    have deletion vectors (a file's statistics also count the rows its vector deleted since)."""
    if "deletionVectors" in (log.protocol().reader_features or []):
        return None
    files = [
        f
        for f in pa.table(log.get_add_actions(flatten=True)).to_pylist()
        if f[f"partition.{DAY}"] is not None and first <= f[f"partition.{DAY}"] <= last
    ]
    if any(f["num_records"] is None or any(f.get(f"null_count.{name}") is None for name in columns) for f in files):
        return None
    per_day, nulls = Counter(), Counter(dict.fromkeys(columns, 0))
    for f in files:
        per_day[str(f[f"partition.{DAY}"])] += f["num_records"]
        nulls.update({name: f[f"null_count.{name}"] for name in columns})
    return dict(per_day), dict(nulls)


def counted_counts(
    rows: DataFrame, first: date, last: date, columns: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """What `logged_counts` gives, counted over the rows in one Spark job."""
    in_range = rows.where(F.col(DAY).between(F.lit(first), F.lit(last)))
    days = in_range.groupBy(DAY).agg(F.count(F.lit(1)), *null_counts(columns)).collect()
    # By position: the counts are named after their columns, the day among them.
    return {str(day[0]): day[1] for day in days}, {
        name: sum(day[2 + i] for day in days) for i, name in enumerate(columns)
    }


def counts(table: StoredTable, first: date, last: date, columns: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per day first..last of `table` and the nulls of `columns` in them: from its log when its
    files have the statistics, else counted in Spark."""
    if table.log is None:
        return {}, dict.fromkeys(columns, 0)
    logged = logged_counts(table.log, first, last, columns)
    return logged if logged is not None else counted_counts(table.rows, first, last, columns)


@dataclass(frozen=True)
class ReadBack:
    """A curated table's days as the lake holds them, read once for its checks: the rows (None
    when there is no table), their count per day and the nulls of each column pandera requires."""

    rows: DataFrame | None
    per_day: dict[str, int]
    nulls: dict[str, int]


def read_back(spec: EntitySpec, table: StoredTable, first: date, last: date) -> ReadBack:
    """`table`'s days first..last as both checks need them: rows per day and nulls of pandera's
    required columns."""
    required = [
        name for name in required_columns(pandera_schema(spec)) if table.rows is None or name in table.rows.columns
    ]
    per_day, nulls = counts(table, first, last, [name for name in required if name != DAY])
    # Every row of days first..last has its day.
    return ReadBack(table.rows, per_day, nulls | ({DAY: 0} if DAY in required else {}))


def schema_check(spec: EntitySpec, key: AssetKey, table: ReadBack) -> AssetCheckResult:
    """pandera's schema of `spec` on the table's days, as read back from the lake."""
    if table.rows is None:
        return AssetCheckResult(asset_key=key, check_name=SCHEMA_CHECK, passed=True, metadata={"rows_checked": 0})
    errors = schema_errors(pandera_schema(spec), table.rows, table.nulls)
    return AssetCheckResult(
        asset_key=key,
        check_name=SCHEMA_CHECK,
        passed=not errors,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": sum(table.per_day.values()),
            "errors": MetadataValue.json(json.loads(json.dumps(errors, default=str))),
        },
    )


def reconciliation_check(
    spec: EntitySpec,
    key: AssetKey,
    lake: LakeResource,
    first: date,
    last: date,
    table: ReadBack,
    dead_letters: StoredTable,
    per_day: dict,
) -> AssetCheckResult:
    """Per day first..last: the manifests' raw records against the rows of the table (`table`) and
    of its `dead_letters`, as the lake holds them, plus the duplicates the run removed (`per_day`,
    the materialisation's metadata of that name)."""
    dead, _ = counts(dead_letters, first, last, [])
    mismatches = {}
    for offset in range((last - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        manifest = read_manifest(lake, spec.provider, spec.stream, day) or {"files": []}
        raw = sum(e["records"] for e in manifest["files"] if "error" not in e)
        curated, duplicates = table.per_day.get(day, 0), per_day.get(day, {}).get("duplicates", 0)
        if raw != curated + dead.get(day, 0) + duplicates:
            mismatches[day] = {
                "raw": raw,
                "curated": curated,
                "dead_lettered": dead.get(day, 0),
                "duplicates": duplicates,
            }
    return AssetCheckResult(
        asset_key=key,
        check_name=RECONCILIATION_CHECK,
        passed=not mismatches,
        metadata={"days_checked": (last - first).days + 1, "mismatches": MetadataValue.json(mismatches)},
    )


def run_checks(
    spec: EntitySpec,
    key: AssetKey,
    checks: tuple[str, ...],
    table: StoredTable,
    dead_letters: StoredTable,
    lake: LakeResource,
    first: date,
    last: date,
    per_day: dict,
) -> list[AssetCheckResult]:
    """The results of `checks` (names) of `spec`'s table (asset `key`; `table` as the lake holds
    it) on its days first..last, with its `dead_letters` table."""
    read = read_back(spec, table, first, last)
    run = {
        SCHEMA_CHECK: lambda: schema_check(spec, key, read),
        RECONCILIATION_CHECK: lambda: reconciliation_check(spec, key, lake, first, last, read, dead_letters, per_day),
    }
    return [run[name]() for name in checks]
