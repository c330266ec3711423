"""Spark rows into PostgreSQL with COPY, from the executors: each Spark task turns its Arrow batches
into CSV (pyarrow's C++ writer) and streams them through one `COPY … FROM STDIN` connection, so the
load runs in parallel on a cluster and nothing is collected on the driver."""

import io

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

_SIMPLE_TYPES = {
    T.StringType: "text", T.LongType: "bigint", T.IntegerType: "integer", T.ShortType: "smallint",
    T.ByteType: "smallint", T.DoubleType: "double precision", T.FloatType: "real", T.BooleanType: "boolean",
    T.DateType: "date", T.TimestampType: "timestamptz", T.TimestampNTZType: "timestamp",
}
_NESTED = (T.ArrayType, T.MapType, T.StructType)


def postgres_type(data_type: T.DataType) -> str:
    """The PostgreSQL column type a Spark column is loaded as (nested values become jsonb)."""
    if isinstance(data_type, T.DecimalType):
        return f"numeric({data_type.precision},{data_type.scale})"
    if isinstance(data_type, _NESTED):
        return "jsonb"
    for spark_type, name in _SIMPLE_TYPES.items():
        if isinstance(data_type, spark_type):
            return name
    raise TypeError(f"no PostgreSQL type for Spark type {data_type.simpleString()}")


def postgres_columns(frame: DataFrame) -> list[tuple[str, str]]:
    return [(f.name, postgres_type(f.dataType)) for f in frame.schema.fields]


def copyable(frame: DataFrame) -> DataFrame:
    """The frame with nested columns as JSON text, the form COPY reads into jsonb."""
    return frame.select(*(F.to_json(f.name).alias(f.name) if isinstance(f.dataType, _NESTED) else F.col(f.name)
                          for f in frame.schema.fields))


def _copy_partition(dsn: str, statement: str):
    def copy(batches):
        options = pa_csv.WriteOptions(include_header=False, batch_size=8192)  # built here: it does not pickle
        rows = 0
        with psycopg.connect(dsn) as conn:
            conn.execute("SET synchronous_commit TO off")  # staging rows: the swap's own commit is synchronous
            with conn.cursor().copy(statement) as stream:
                for batch in batches:
                    if batch.num_rows:
                        sink = io.BytesIO()
                        pa_csv.write_csv(batch, sink, options)
                        stream.write(sink.getbuffer())
                        rows += batch.num_rows
        yield pa.RecordBatch.from_pydict({"rows": [rows]}, schema=pa.schema([("rows", pa.int64())]))
    return copy


def copy_frame(frame: DataFrame, dsn: str, schema: str, table: str, connections: int) -> int:
    """COPY every row of `frame` into `schema.table` over at most `connections` parallel connections
    (one Spark task and one transaction each, so many small Delta files do not each pay for a task
    and a connection); returns the number of rows sent."""
    rows = copyable(frame).coalesce(connections)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, rows.columns)))
    # Composed SQL is rendered here: executors receive plain text, no connection state.
    text = statement.as_string(None)
    counts = rows.mapInArrow(_copy_partition(dsn, text), "rows long")
    return counts.agg(F.coalesce(F.sum("rows"), F.lit(0))).first()[0]
