"""Schema conformance: raw JSON fields (read as text) to typed, normalised columns.

A `Field` names an output column, the SQL expression that reads it from the raw record, and its
kind. A value that is present but does not convert becomes null, and the field's name is added to
`_type_errors`, so the record can be routed by a quality rule instead of crashing the job.
"""

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_transform import normalise

LINEAGE = ["tenant_id", "event_date", "_source", "_source_file", "_ingest_ts", "_run_id"]
# Kinds whose failure to convert is a type error (the others normalise to null by design).
_CASTS = {"bigint": "bigint", "double": "double", "decimal": "decimal(18,2)", "boolean": "boolean", "date": "date"}


@dataclass(frozen=True)
class Field:
    name: str
    source: str  # a SQL expression over the raw record's columns
    kind: str = "string"  # string | upper | bigint | double | decimal | boolean | date | timestamp | cents | email | country | phone
    region: str | None = None  # for phone: the (output) column holding the record's country


def _convert(field: Field, value: Column) -> Column:
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


def _is_type_error(field: Field, value: Column, converted: Column) -> Column:
    converts = field.kind in _CASTS or field.kind in ("timestamp", "cents")
    present = value.isNotNull() & (normalise.strip(value.cast("string")) != "")
    return F.when(F.lit(converts) & present & converted.isNull(), F.lit(field.name))


def conform(frame: DataFrame, fields: list[Field]) -> DataFrame:
    """Lineage columns, `_raw` (the source record's fields as one struct, written as JSON only for
    dead letters), typed fields and `_type_errors`."""
    raw_columns = [c for c in frame.columns if c not in LINEAGE]
    plain = [f for f in fields if f.kind != "phone"]
    typed = frame.select(
        *LINEAGE,
        F.struct(*raw_columns).alias("_raw"),
        *(_convert(f, F.expr(f.source)).alias(f.name) for f in plain),
        F.array_compact(F.array(*(_is_type_error(f, F.expr(f.source), _convert(f, F.expr(f.source))) for f in plain)))
        .alias("_type_errors"),
        *(F.expr(f.source).alias(f"_phone_{f.name}") for f in fields if f.kind == "phone"),
    )
    for f in fields:
        if f.kind == "country":
            typed = normalise.with_country(typed.withColumnRenamed(f.name, f"_country_{f.name}"), f"_country_{f.name}", f.name)
    for f in fields:
        if f.kind == "phone":
            typed = typed.withColumn(f.name, normalise.phone(f"_phone_{f.name}", f.region)).drop(f"_phone_{f.name}")
    return typed.select(*LINEAGE, "_raw", *(f.name for f in fields), "_type_errors")
