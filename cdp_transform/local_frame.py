"""Small tables from Python rows (file lineage, reference data) built inside the query plan.

`SparkSession.createDataFrame(rows)` ships the rows as a pickled RDD that every broadcast or join
of it runs a job over; here they are one JSON literal read by `from_json` and `inline`, which the
optimiser folds into the plan, with no job of its own (docs/performance.md)."""

import json
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType


def _json_value(value):
    return value.isoformat() if isinstance(value, date | datetime) else value


def local_frame(session: SparkSession, rows: list[tuple], schema: str) -> DataFrame:
    """The rows (tuples in the order of `schema`, a DDL string) as a DataFrame."""
    fields = DataType.fromDDL(schema).fields
    document = json.dumps([{f.name: _json_value(v) for f, v in zip(fields, row, strict=True)} for row in rows])
    return session.range(1).select(F.inline(F.from_json(F.lit(document), f"array<struct<{schema}>>")))
