"""A few rows of a Spark frame as a Markdown table, for an asset's materialisation metadata."""

from dagster import MetadataValue
from pyspark.sql import DataFrame


def preview(frame: DataFrame, columns: list[str], rows: int = 5) -> MetadataValue:
    """The first `rows` rows of `frame`'s `columns` as a Markdown table."""
    sample = frame.select(*columns).limit(rows).collect()
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(str(row[c]) for c in columns) + " |\n" for row in sample)
    return MetadataValue.md(header + body)
