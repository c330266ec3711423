"""Row lineage: the columns every curated row and dead letter carries, and how they ride through
curation.

Rows carry `CARRIED` through curation: `_file`, the index of the row's raw file in the run's
`RunLineage.files` (in path order, so ordering by `_file` orders by path), stands for `_source`,
`_source_file` and `_run_id`, which `RunLineage.restore` puts back as the rows are written, so
that the long strings (a path, a run id) do not ride every shuffle, sort and checkpoint of the
curated job (docs/performance.md).
"""

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# The lineage columns of the curated tables, in their order.
LINEAGE = ["tenant_id", "event_date", "_source", "_source_file", "_ingest_ts", "_run_id"]
# The lineage columns rows carry through curation, and their names.
CARRIED_SCHEMA = "tenant_id string, event_date date, _file int, _ingest_ts timestamp"
CARRIED = [column.split()[0] for column in CARRIED_SCHEMA.split(", ")]
_SEPARATOR = "\x00"  # in no path


@dataclass(frozen=True)
class RunLineage:
    """One run's lineage of one table: the provider, the run and the raw files read, in path order."""

    source: str
    run_id: str
    files: tuple[str, ...]

    def __post_init__(self):
        if list(self.files) != sorted(self.files):
            raise ValueError("RunLineage.files must be in path order")

    def source_file(self) -> Column:
        """The `_source_file` of a row that carries `_file`."""
        # One string literal split in two: the optimiser folds it into one array constant.
        return F.get(F.split(F.lit(_SEPARATOR.join(self.files)), _SEPARATOR), F.col("_file"))

    def restore(self, frame: DataFrame) -> DataFrame:
        """`frame` with `_file` replaced by `_source` and `_source_file`, and `_run_id` after
        `_ingest_ts`: the `LINEAGE` columns in the order they have in the tables."""
        restored = {
            "_file": [F.lit(self.source).alias("_source"), self.source_file().alias("_source_file")],
            "_ingest_ts": [F.col("_ingest_ts"), F.lit(self.run_id).alias("_run_id")],
        }
        return frame.select(*(column for name in frame.columns for column in restored.get(name, [F.col(name)])))
