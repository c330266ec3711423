"""Quality rules declared as data: each a SQL condition a good row satisfies (null counts as a
failure), with a severity. Critical failures send the row to the dead-letter table; warnings are
counted and shown. `apply_rules` adds `_critical` and `_warnings` (arrays of failed rule names)."""

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_transform.date_bounds import EARLIEST_COLUMN, earliest_timestamp

CRITICAL, WARNING = "critical", "warning"
# No backslashes: the pattern sits inside a SQL string literal, where `\.` would become `.`.
EMAIL_PATTERN = r"^[a-z0-9._%+-]+@[a-z0-9-]+([.][a-z0-9-]+)*[.][a-z]{2,}$"


@dataclass(frozen=True)
class Rule:
    name: str
    condition: str
    severity: str = CRITICAL
    reason: str = ""


def typed_fields() -> Rule:
    return Rule(
        "typed_fields", "size(_type_errors) = 0", CRITICAL, "a field is present but does not convert to its type"
    )


def not_null(*columns: str) -> Rule:
    return Rule(
        f"required_{'_'.join(columns)}",
        " AND ".join(f"{c} IS NOT NULL" for c in columns),
        CRITICAL,
        f"required {', '.join(columns)} missing",
    )


def email_format(column: str = "email", severity: str = CRITICAL) -> Rule:
    return Rule(
        "email_format",
        f"{column} IS NULL OR {column} RLIKE '{EMAIL_PATTERN}'",
        severity,
        f"{column} is not a valid address",
    )


def not_before_earliest(name: str, column: str, what: str) -> Rule:
    """`column` (a UTC timestamp) on or after its tenant's earliest event date (`date_bounds.py`)."""
    return Rule(
        name,
        f"{column} >= {EARLIEST_COLUMN}",
        CRITICAL,
        f"{what} before the tenant's earliest event date (cdp_transform/date_bounds.yaml)",
    )


def names_where(conditions: list[tuple[Column, str]]) -> Column:
    """The names whose condition holds, in order, as an array of strings (empty when none does).
    A concatenation of one-name and empty arrays, not `array_compact` of an array with nulls:
    `array_compact` is a higher-order function (`filter`), which Spark does not compile into the
    stage's generated code, so every projection holding one ran apart, copying each row again
    (docs/performance.md)."""
    none = F.array().cast("array<string>")
    return (
        F.concat(*(F.when(condition, F.array(F.lit(name))).otherwise(none) for condition, name in conditions))
        if conditions
        else none
    )


def apply_rules(frame: DataFrame, rules: list[Rule]) -> DataFrame:
    if any(EARLIEST_COLUMN in r.condition for r in rules):
        frame = frame.withColumn(EARLIEST_COLUMN, earliest_timestamp())

    def failed(severity: str):
        return names_where(
            [(~F.coalesce(F.expr(r.condition), F.lit(False)), r.name) for r in rules if r.severity == severity]
        )

    return frame.withColumn("_critical", failed(CRITICAL)).withColumn("_warnings", failed(WARNING))


def reasons(rules: list[Rule]) -> dict[str, str]:
    return {r.name: r.reason or r.condition for r in rules}
