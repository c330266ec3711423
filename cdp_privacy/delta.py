"""Erasure in the lake's Delta tables: DELETE the person's rows, REORG … APPLY (PURGE) so that no
current file still holds them under a deletion vector, then VACUUM so that no older file does.

The retention safety check, handled deliberately: VACUUM refuses a retention under 7 days because
a plain VACUUM deletes every file the current version does not reference, including the files a
concurrent writer has written but not yet committed. The forget VACUUMs in LITE mode, which
deletes only the files the transaction log records as removed (committed, then replaced by a
later version): files of an uncommitted write are never in the log, so concurrent writers are
safe, and the check is switched off for those statements only (the setting is restored after).
What is given up, on purpose: time travel to the versions that held the person.
"""

import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType

from cdp_common.identifiers import RAW_IDENTIFIERS
from cdp_privacy.columns import COLUMN_KINDS, MAP_VALUE, NODE, ORDER, normalised_sql, spark_literal
from cdp_privacy.person import Person
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import (
    EDGES,
    EXCLUSIONS,
    HISTORY,
    MAP,
    MERGES,
    NODES,
    PREDICTIONS,
    PROFILES,
    curated_path,
    dead_letter_path,
)
from cdp_resources.spark import delta_table_name
from cdp_transform.generic import CURATED_ENTITIES

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
RECORD_COLUMN = "record"  # a curated dead letter's raw record, as JSON
ORDER_TABLE = curated_path("orders")


@dataclass
class DeltaErasure:
    removed: Counter = field(default_factory=Counter)  # lake path -> rows deleted
    files_removed: Counter = field(default_factory=Counter)  # lake path -> files vacuumed
    order_ids: list[str] = field(default_factory=list)  # the person's orders (their lines carry only that)
    seconds: Counter = field(default_factory=Counter)  # delete, purge, vacuum: where the time goes


def person_tables() -> list[tuple[str, tuple[str, str] | None]]:
    """(lake path, raw stream of its records for dead-letter tables) of every Delta table that can
    hold a person (the generic tables of registered streams and the predictions included): orders
    first, so their ids are known before order lines are matched."""
    curated = sorted((curated_path(spec.table) for spec in CURATED_ENTITIES), key=lambda path: path != ORDER_TABLE)
    dead = [(dead_letter_path(spec.table), (spec.provider, spec.stream)) for spec in CURATED_ENTITIES]
    identity = [NODES, EDGES, MAP, MERGES, EXCLUSIONS, PROFILES, HISTORY, PREDICTIONS]
    return [*((path, None) for path in curated + identity), *dead]


def _values(person: Person, kind: str, order_ids: list[str]) -> list:
    if kind == MAP_VALUE:
        return person.map_values
    if kind == NODE:
        return sorted(person.node_ids)
    if kind == ORDER:
        return order_ids
    return person.values(kind)


def _in(expression: str, values: list) -> str:
    return f"{expression} IN ({', '.join(spark_literal(v) for v in values)})"


def predicate(schema, person: Person, raw_stream: tuple[str, str] | None, order_ids: list[str]) -> str | None:
    """A Spark SQL condition true for the person's rows of a table with `schema`; None when no
    column of the table can name them."""
    terms = []
    if raw_stream is not None and RECORD_COLUMN in schema.fieldNames():
        for path, kind in RAW_IDENTIFIERS.get(raw_stream, {}).items():
            if values := person.values(kind):
                terms.append(_in(normalised_sql(kind, f"get_json_object({RECORD_COLUMN}, '$.{path}')"), values))
    for column in schema.fields:
        kind = COLUMN_KINDS.get(column.name)
        values = _values(person, kind, order_ids) if kind else []
        if not values:
            continue
        name = f"`{column.name}`"
        if isinstance(column.dataType, ArrayType) and isinstance(column.dataType.elementType, StringType):
            terms.append(f"exists({name}, x -> {_in(normalised_sql(kind, 'x'), values)})")
        elif kind == NODE:
            terms.append(f"{name} IN ({', '.join(str(int(v)) for v in values)})")
        else:
            terms.append(_in(normalised_sql(kind, name), values))
    return " OR ".join(f"({term})" for term in terms) or None


def erase_delta(spark: SparkSession, lake: LakeResource, person: Person) -> DeltaErasure:
    """The person's rows deleted from every Delta table that holds people, and purged from disk."""
    result = DeltaErasure()
    for path, raw_stream in person_tables():
        frame = read_delta(spark, lake, path)
        if frame is None:
            continue
        condition = predicate(frame.schema, person, raw_stream, result.order_ids)
        if condition is None:
            continue
        if "tenant_id" in frame.columns:
            condition = f"tenant_id = {spark_literal(person.tenant)} AND ({condition})"
        if path == ORDER_TABLE:  # their order lines carry no identifier but the order's id
            result.order_ids = [
                row[0] for row in frame.where(condition).select(F.col("order_id").cast("string")).collect()
            ]
        table = delta_table_name(lake.spark_path(path))
        started = time.monotonic()
        deleted = spark.sql(f"DELETE FROM {table} WHERE {condition}").first()
        result.removed[path] = int(deleted[0]) if deleted is not None else 0
        result.seconds["delete"] += time.monotonic() - started
        if result.removed[path]:  # rows deleted under deletion vectors: rewrite their files
            started = time.monotonic()
            spark.sql(f"REORG TABLE {table} APPLY (PURGE)").collect()
            result.seconds["purge"] += time.monotonic() - started
        if result.removed[path] or _unreferenced_files(lake, path):  # older versions may hold them too
            started = time.monotonic()
            result.files_removed[path] = vacuum_removed_files(spark, table)
            result.seconds["vacuum"] += time.monotonic() - started
    return result


def _unreferenced_files(lake: LakeResource, path: str) -> bool:
    """Whether the table's directory holds data files its current version does not reference
    (older versions' files, which VACUUM would delete); read from the log by delta-rs, no Spark."""
    added = lake.delta_log(path).get_add_actions(flatten=True).column("path").to_pylist()
    current = {f"{path}/{unquote(name)}" for name in added}
    return any(
        obj.key.endswith(".parquet") and "/_delta_log/" not in obj.key and obj.key not in current
        for obj in lake.list(f"{path}/")
    )


def vacuum_removed_files(spark: SparkSession, table: str) -> int:
    """VACUUM LITE of every file the log records as removed (see the module's docstring for why
    that is safe with the retention check off); the files deleted."""
    previous = spark.conf.get(RETENTION_CHECK, "true")
    spark.conf.set(RETENTION_CHECK, "false")
    try:
        vacuumed = spark.sql(f"VACUUM {table} LITE RETAIN 0 HOURS").collect()
    finally:
        spark.conf.set(RETENTION_CHECK, previous)
    return len(vacuumed)
