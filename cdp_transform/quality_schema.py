"""pandera schemas for the curated tables, derived from the entity specs: each field's Spark type,
and the natural key and lineage columns non-null; `schema_errors` validates a table against one."""

import pandera.pyspark as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_transform.entities import EntitySpec

_TYPES = {
    "bigint": T.LongType(),
    "double": T.DoubleType(),
    "decimal": T.DecimalType(18, 2),
    "cents": T.DecimalType(18, 2),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}


def pandera_schema(spec: EntitySpec) -> pa.DataFrameSchema:
    columns = {
        f.name: pa.Column(_TYPES.get(f.kind, T.StringType()), nullable=f.name not in spec.key) for f in spec.fields
    }
    columns.update(
        {
            "tenant_id": pa.Column(T.StringType(), nullable=False),
            "event_date": pa.Column(T.DateType(), nullable=False),
            "_source_file": pa.Column(T.StringType(), nullable=False),
            "_run_id": pa.Column(T.StringType(), nullable=False),
        }
    )
    return pa.DataFrameSchema(columns, name=spec.table)


def required_columns(schema: pa.DataFrameSchema) -> list[str]:
    return [name for name, column in schema.columns.items() if not column.nullable]


def null_counts(columns: list[str]) -> list[Column]:
    """Aggregates: the nulls of each of `columns`, named after it."""
    return [F.count_if(F.col(name).isNull()).alias(name) for name in columns]


def schema_errors(schema: pa.DataFrameSchema, rows: DataFrame, nulls: dict[str, int] | None = None) -> dict:
    """pandera's errors of `rows` against `schema` (its report: {"SCHEMA": {reason: [error, …]}}).
    pandera checks the columns and types; the required columns' nulls are `nulls` when the caller
    has them (the curated checks read them from the Delta log), else counted in one Spark job,
    where pandera runs one per column."""
    required = required_columns(schema)
    errors = {
        scope: dict(reasons)
        for scope, reasons in schema.update_columns({name: {"nullable": True} for name in required})
        .validate(rows)
        .pandera.errors.items()
    }
    present = [name for name in required if name in rows.columns]
    if nulls is None:
        nulls = rows.agg(*null_counts(present)).first().asDict() if present else {}
    found = [
        {
            "schema": schema.name,
            "column": name,
            "check": "not_nullable",
            "error": f"non-nullable column '{name}' contains {nulls[name]} nulls",
        }
        for name in present
        if nulls[name]
    ]
    if found:
        errors.setdefault("SCHEMA", {})["SERIES_CONTAINS_NULLS"] = found
    return errors
