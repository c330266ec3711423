"""pandera schemas for the curated tables, derived from the entity specs: each field's Spark type,
and the natural key and lineage columns non-null."""

import pandera.pyspark as pa
from pyspark.sql import types as T

from cdp_transform.entities import EntitySpec

_TYPES = {
    "bigint": T.LongType(), "double": T.DoubleType(), "decimal": T.DecimalType(18, 2), "cents": T.DecimalType(18, 2),
    "boolean": T.BooleanType(), "date": T.DateType(), "timestamp": T.TimestampType(),
}


def pandera_schema(spec: EntitySpec) -> pa.DataFrameSchema:
    columns = {f.name: pa.Column(_TYPES.get(f.kind, T.StringType()), nullable=f.name not in spec.key) for f in spec.fields}
    columns.update({
        "tenant_id": pa.Column(T.StringType(), nullable=False),
        "event_date": pa.Column(T.DateType(), nullable=False),
        "_source_file": pa.Column(T.StringType(), nullable=False),
        "_run_id": pa.Column(T.StringType(), nullable=False),
    })
    return pa.DataFrameSchema(columns, name=spec.table)
