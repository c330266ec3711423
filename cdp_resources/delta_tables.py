"""Delta tables in the lake through Spark: reading a table (at a version, or a range of days) and
replacing a range of date partitions in one transaction, creating the table with its settings on
first write. SQL and the DataFrame API only, not Delta's Python API, so that it all runs on Spark
Connect too."""

import uuid
from datetime import date

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StructType

from cdp_resources.lake import LakeResource
from cdp_resources.spark import delta_table_name


def read_delta(spark: SparkSession, lake: LakeResource, key: str, version: int | None = None) -> DataFrame | None:
    """The Delta table at lake `key` (at `version` when given); None when there is none."""
    if not lake.is_delta_table(key):
        return None
    reader = spark.read.format("delta")
    return (reader.option("versionAsOf", version) if version is not None else reader).load(lake.spark_path(key))


def read_days(
    spark: SparkSession, lake: LakeResource, key: str, first: date | None, last: date, column: str = "event_date"
) -> DataFrame | None:
    """Rows of the Delta table at lake `key` whose `column` is in first..last (from the beginning
    when first is None); None when there is no table."""
    rows = read_delta(spark, lake, key)
    if rows is None:
        return None
    rows = rows.where(F.col(column) <= F.lit(last))
    return rows if first is None else rows.where(F.col(column) >= F.lit(first))


def latest_version(lake: LakeResource, key: str) -> int | None:
    """The version of the Delta table at lake `key` now (from its log, by delta-rs); None when there is none."""
    log = lake.delta_log(key)
    return None if log is None else log.version()


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
    default, the first 32 columns, makes the write much slower); `dictionary_columns`, the
    only flat columns Parquet dictionary-encodes (default: all): building dictionaries that
    overflow and are dropped, for ids, timestamps and amounts, is CPU spent for nothing."""
    if _created(frame, path, column, first, last, stats_columns, dictionary_columns):
        return
    condition = f"{column} >= '{first}' AND {column} <= '{last}'"
    writer = frame.write.format("delta").mode("overwrite").partitionBy(column).option("replaceWhere", condition)
    if stats_columns:  # a table property only if this write creates the table
        writer = writer.option("delta.dataSkippingStatsColumns", ",".join(stats_columns))
    writer.save(path)


def replace_current_state(
    frame: DataFrame,
    path: str,
    column: str,
    first: date,
    last: date,
    key: list[str],
    stats_columns: list[str] | None = None,
    dictionary_columns: list[str] | None = None,
) -> None:
    """Replace the date partitions first..last of the current-state Delta table at `path` with
    `frame`, whose rows are each (tenant_id, `key`)'s newest version, and remove every older copy
    of those keys from the other days: one MERGE, so one transaction (the first write creates the
    table, as `replace_partitions`). A reader, or a run killed mid-write, sees the table before or
    after, never a key twice."""
    if _created(frame, path, column, first, last, stats_columns, dictionary_columns):
        return
    # The source holds each row to insert and, apart, a marker of its key: a target row matched by
    # a marker is an older copy (on any day) and goes; rows match on markers only, so every row
    # to insert stays "not matched" and is inserted. What else lies in first..last goes too.
    action = "_cdp_merge_action"
    markers = frame.select("tenant_id", *key).withColumn(action, F.lit("delete"))
    source = frame.withColumn(action, F.lit("insert")).unionByName(markers, allowMissingColumns=True)
    view = f"cdp_merge_{uuid.uuid4().hex}"  # runs write several tables at once in one session
    source.createOrReplaceTempView(view)

    def quoted(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    matches = " AND ".join(f"t.{quoted(c)} <=> s.{quoted(c)}" for c in ["tenant_id", *key])
    columns = ", ".join(quoted(c) for c in frame.columns)
    values = ", ".join(f"s.{quoted(c)}" for c in frame.columns)
    try:
        frame.sparkSession.sql(
            f"MERGE INTO {delta_table_name(path)} AS t USING {view} AS s "
            f"ON s.{action} = 'delete' AND {matches} "
            "WHEN MATCHED THEN DELETE "
            f"WHEN NOT MATCHED AND s.{action} = 'insert' THEN INSERT ({columns}) VALUES ({values}) "
            f"WHEN NOT MATCHED BY SOURCE AND t.{quoted(column)} BETWEEN DATE'{first}' AND DATE'{last}' THEN DELETE"
        )
    finally:
        frame.sparkSession.catalog.dropTempView(view)


def _created(
    frame: DataFrame,
    path: str,
    column: str,
    first: date,
    last: date,
    stats_columns: list[str] | None,
    dictionary_columns: list[str] | None,
) -> bool:
    """Whether this write created the table at `path`: partitioned by `column`, with its settings as
    table properties, made with `frame`'s rows in one transaction (CREATE TABLE AS SELECT). False
    when the table exists (or a log directory without commits, its files deleted, is there). Rows
    outside first..last fail the write, as `replaceWhere` makes them fail on an existing table."""
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
    try:
        # Refused before any row is computed when the table exists (tens of milliseconds).
        writer.create()
        return True
    except AnalysisException as error:
        if error.getCondition() != "TABLE_OR_VIEW_ALREADY_EXISTS":
            raise
        return False
