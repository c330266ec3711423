"""Schema conformance: raw JSON fields (read as text) to typed, normalised columns.

A `Field` names an output column, the SQL expression that reads it from the raw record, and its
kind. A value that is present but does not convert becomes null, and the field's name is added to
`_type_errors`, so the record can be routed by a quality rule instead of crashing the job.
"""

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_transform import normalise
from cdp_transform.lineage import CARRIED
from cdp_transform.rules import names_where

# Kinds whose failure to convert is a type error (the others normalise to null by design).
_CASTS = {"bigint": "bigint", "double": "double", "decimal": "decimal(18,2)", "boolean": "boolean", "date": "date"}
_CONVERTING = {*_CASTS, "timestamp", "cents"}
RAW_PREFIX = "_raw_"


@dataclass(frozen=True)
class Field:
    name: str
    source: str  # a SQL expression over the raw record's columns
    kind: str = "string"  # string | upper | bigint | double | decimal | boolean | date | timestamp | cents | email | country | phone
    region: str | None = None  # for phone: the (output) column holding the record's country


def typed_value(field: Field) -> Column:
    """The field's typed value (a country: its lookup key; a phone: not typed here)."""
    value = F.expr(field.source)
    if field.kind in _CASTS:
        return F.expr(f"try_cast({field.source} as {_CASTS[field.kind]})")
    if field.kind == "timestamp":
        return normalise.timestamp(value)
    if field.kind == "cents":
        return (F.expr(f"try_cast({field.source} as bigint)") / 100).cast("decimal(18,2)")
    if field.kind == "email":
        return normalise.email(value)
    if field.kind == "country":
        return normalise.country_key(value)  # looked up after the select (`normalise.with_country`)
    if field.kind == "upper":
        return F.upper(normalise.strip(value))
    return value


def _present(value: Column) -> Column:
    return value.isNotNull() & (normalise.strip(value.cast("string")) != "")


def keep_record_where(frame: DataFrame, condition: Column) -> DataFrame:
    """Replaces the `_raw_` columns `conform` keeps by `_raw`, the source record as one struct with
    its own field names, on the rows meeting `condition` (null elsewhere, so it is never built there)."""
    raw = [c for c in frame.columns if c.startswith(RAW_PREFIX)]
    record = F.when(condition, F.struct(*(F.col(c).alias(c.removeprefix(RAW_PREFIX)) for c in raw)))
    return frame.select(*(c for c in frame.columns if c not in raw), record.alias("_raw"))


def conform(frame: DataFrame, fields: list[Field], carry: tuple[str, ...] = ()) -> DataFrame:
    """The carried lineage columns (`lineage.CARRIED`), the `carry` columns, the source record's
    fields (renamed `_raw_{name}`; made one struct by `keep_record_where` only where needed), typed
    fields and `_type_errors`."""
    kept = [*CARRIED, *carry]
    raw_columns = [RAW_PREFIX + c for c in frame.columns if c not in kept]
    plain = [f for f in fields if f.kind != "phone"]
    converting = [f for f in plain if f.kind in _CONVERTING]
    typed = frame.select(
        *kept,
        *(F.col(c.removeprefix(RAW_PREFIX)).alias(c) for c in raw_columns),
        *(typed_value(f).alias(f.name) for f in plain),
        *(_present(F.expr(f.source)).alias(f"_present_{f.name}") for f in converting),
        *(F.expr(f.source).alias(f"_phone_{f.name}") for f in fields if f.kind == "phone"),
    )
    # A second projection reads the typed columns, so each conversion runs once per row.
    failed = [(F.col(f"_present_{f.name}") & F.col(f.name).isNull(), f.name) for f in converting]
    typed = typed.withColumn("_type_errors", names_where(failed)).drop(*(f"_present_{f.name}" for f in converting))
    for f in fields:
        if f.kind == "country":
            typed = normalise.with_country(
                typed.withColumnRenamed(f.name, f"_country_{f.name}"), f"_country_{f.name}", f.name
            )
    for f in fields:
        if f.kind == "phone":
            typed = typed.withColumn(f.name, normalise.phone(f"_phone_{f.name}", f.region)).drop(f"_phone_{f.name}")
    return typed.select(*kept, *raw_columns, *(f.name for f in fields), "_type_errors")
