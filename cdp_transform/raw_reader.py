"""Raw NDJSON files read by Spark as rows of an entity's read schema, each with the lineage of the
file it came from (tenant, event day, ingest time and the file's index in the run)."""

import re
import unicodedata
from datetime import UTC, date, datetime
from urllib.parse import quote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_resources.raw_zone import RAW_KEY
from cdp_transform.entities import EntitySpec
from cdp_transform.lineage import CARRIED, CARRIED_SCHEMA, RunLineage
from cdp_transform.local_frame import local_frame

# What java.net.URI leaves unquoted in a path besides letters, digits and "_.-~" (which Python's
# `quote` never quotes); Unicode letters outside ASCII it leaves too.
_URI_PATH_SAFE = "/@!*'(),;:$&+="
_URI_QUOTED_CATEGORIES = {"Cc", "Zs", "Zl", "Zp"}  # control and space characters
_GLOB_CHARACTERS = re.compile(r"([\\{}\[\]*?])")  # what Hadoop reads as a pattern in a path


def uri_quoted(tail: str) -> str:
    """A raw file's path tail as Spark gives it in `input_file_name()`: its Hadoop Path's URI, where
    a space or `%` in a tenant id is percent-encoded."""
    return "".join(
        c if ord(c) > 127 and unicodedata.category(c) not in _URI_QUOTED_CATEGORIES else quote(c, safe=_URI_PATH_SAFE)
        for c in tail
    )


def literal_path(path: str) -> str:
    """`path` with Hadoop's glob characters escaped, so that Spark reads the file of exactly that
    name: a tenant id such as `b[ae]ta` would otherwise be a pattern, matching other tenants' files."""
    return _GLOB_CHARACTERS.sub(r"\\\1", path)


def raw_file_lineage(session: SparkSession, files: tuple[str, ...]) -> DataFrame:
    """Per raw file, keyed by the last seven segments of its path (`tenant/provider/stream/year=…/
    month=…/day=…/name`) as Spark names them (`uri_quoted`): `_file`, its index in `files`,
    tenant_id and event_date from the layout, _ingest_ts from the flush time in its name. Parsed
    once per file here, not once per record in Spark."""
    rows = []
    for index, path in enumerate(files):
        tail = "/".join(path.split("/")[-7:])
        key = RAW_KEY.match(f"raw/{tail}")
        rows.append(
            (
                uri_quoted(tail),
                key["tenant"],
                date(int(key["year"]), int(key["month"]), int(key["day"])),
                index,
                datetime.strptime(key["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
            )
        )
    return local_frame(session, rows, f"_file_tail string, {CARRIED_SCHEMA}")


def read_raw(session: SparkSession, spec: EntitySpec, lineage: RunLineage) -> DataFrame:
    """The raw files of `lineage` as rows of the spec's read schema, with the carried lineage
    columns (`cdp_transform.lineage.CARRIED`, from `raw_file_lineage`); none when no files. The
    file is named by `input_file_name()`, not the `_metadata.file_path` column: the scan would copy
    every row once more to add `_metadata`."""
    if not lineage.files:
        return session.createDataFrame([], f"{spec.read_schema}, {CARRIED_SCHEMA}")
    frame = session.read.schema(spec.read_schema).json([literal_path(path) for path in lineage.files])
    tail = F.substring_index(F.input_file_name(), "/", -7).alias("_file_tail")
    return (
        frame.select("*", tail)
        .join(F.broadcast(raw_file_lineage(session, lineage.files)), "_file_tail")
        .select(*frame.columns, *CARRIED)
    )
