"""Spark rows into PostgreSQL with COPY, from the executors: each Spark task encodes its Arrow batches
in PostgreSQL's binary COPY format (pgpq, in Rust) and streams them through one `COPY … FROM STDIN`
connection, so the load runs in parallel on a cluster and nothing is collected on the driver.
Binary input spares PostgreSQL the parsing of numbers, timestamps and decimals from text: the
server's side of a COPY costs about half what it costs from CSV."""

import itertools
from collections.abc import Iterator

import psycopg
import pyarrow as pa
from pgpq import ArrowToPostgresBinaryEncoder
from pgpq.encoders import StringEncoderBuilder
from pgpq.schema import Jsonb
from psycopg import sql
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

_SIMPLE_TYPES = {
    T.StringType: "text",
    T.LongType: "bigint",
    T.IntegerType: "integer",
    T.ShortType: "smallint",
    T.ByteType: "smallint",
    T.DoubleType: "double precision",
    T.FloatType: "real",
    T.BooleanType: "boolean",
    T.DateType: "date",
    T.TimestampType: "timestamptz",
    T.TimestampNTZType: "timestamp",
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


def json_columns(frame: DataFrame) -> frozenset[str]:
    """The nested columns, sent as JSON text into jsonb."""
    return frozenset(f.name for f in frame.schema.fields if isinstance(f.dataType, _NESTED))


def copyable(frame: DataFrame) -> DataFrame:
    """The frame with nested columns as JSON text, sent as jsonb."""
    nested = json_columns(frame)
    return frame.select(*(F.to_json(c).alias(c) if c in nested else F.col(c) for c in frame.columns))


def _binary_encoder(schema: pa.Schema, jsonb: frozenset[str]) -> ArrowToPostgresBinaryEncoder:
    """pgpq's encoder for the batches' schema; the JSON text of nested columns goes out as jsonb."""
    encoders = {
        field.name: StringEncoderBuilder.new_with_output(field, Jsonb())
        if field.name in jsonb
        else ArrowToPostgresBinaryEncoder.infer_encoder(field)
        for field in schema
    }
    return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, encoders)


def binary_copy_data(batches: Iterator[pa.RecordBatch], jsonb: frozenset[str]) -> Iterator[bytes]:
    """`COPY … (FORMAT binary)` input for the batches (`jsonb`: the JSON text columns): header, rows,
    trailer; nothing at all for no batches (an empty binary COPY is not valid input). The encoder is
    built from the batches' own schema."""
    first = next(batches, None)
    if first is None:
        return
    encoder = _binary_encoder(first.schema, jsonb)
    yield encoder.write_header()
    for batch in itertools.chain([first], batches):
        yield encoder.write_batch(batch)
    yield encoder.finish()


def _copy_partition(dsn: str, statement: str, jsonb: frozenset[str]):
    def copy(batches):
        rows = 0

        def counted():
            nonlocal rows
            for batch in batches:
                rows += batch.num_rows
                yield batch

        data = binary_copy_data(counted(), jsonb)  # built here, on the executor: pgpq's encoder does not pickle
        header = next(data, None)
        if header is not None:  # an empty task opens no connection
            with psycopg.connect(dsn) as conn:
                conn.execute("SET synchronous_commit TO off")  # staging rows: the swap's own commit is synchronous
                with conn.cursor().copy(statement) as stream:
                    stream.write(header)
                    for chunk in data:
                        stream.write(chunk)
        yield pa.RecordBatch.from_pydict({"rows": [rows]}, schema=pa.schema([("rows", pa.int64())]))

    return copy


def copy_frame(frame: DataFrame, dsn: str, schema: str, table: str, connections: int) -> int:
    """COPY every row of `frame` into `schema.table` over at most `connections` parallel connections
    (one Spark task and one transaction each, so many small Delta files do not each pay for a task
    and a connection); returns the number of rows sent."""
    rows = copyable(frame).coalesce(connections)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, rows.columns))
    )
    # Composed SQL is rendered here: executors receive plain text, no connection state.
    text = statement.as_string(None)
    counts = rows.mapInArrow(_copy_partition(dsn, text, json_columns(frame)), "rows long")
    return counts.agg(F.coalesce(F.sum("rows"), F.lit(0))).first()[0]
