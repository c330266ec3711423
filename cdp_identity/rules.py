"""Identity merge rules as data (`merge_rules.yaml`): identifier priority, limits per profile,
blocked values and the shared-identifier threshold, per tenant over a default."""

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

RULES_FILE = Path(__file__).parent / "merge_rules.yaml"


@dataclass(frozen=True)
class MergeRules:
    priority: tuple[str, ...]
    limits: dict[str, int]
    blocked: dict[str, tuple[str, ...]]
    people_types: tuple[str, ...]
    max_people_per_identifier: int

    def rank(self, id_type: str) -> int:
        return self.priority.index(id_type)

    def blocked_patterns(self, id_type: str) -> tuple[str, ...]:
        return self.blocked.get("any", ()) + self.blocked.get(id_type, ())


@functools.cache
def _declared() -> dict:
    with open(RULES_FILE) as handle:
        return yaml.safe_load(handle)


def rules_for(tenant: str) -> MergeRules:
    """The default rules with `tenant`'s overrides applied."""
    declared = _declared()
    merged = dict(declared["default"])
    for key, value in declared.get(tenant, {}).items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    return MergeRules(
        priority=tuple(merged["priority"]),
        limits=dict(merged["limits"]),
        blocked={kind: tuple(patterns) for kind, patterns in merged["blocked"].items()},
        people_types=tuple(merged["people_types"]),
        max_people_per_identifier=int(merged["max_people_per_identifier"]),
    )


def rules_frame(spark: SparkSession, tenants: list[str]) -> DataFrame:
    """One row per (tenant, id_type): its rank in the priority order, its limit and whether it counts people."""
    rows = []
    for tenant in tenants:
        rules = rules_for(tenant)
        rows += [
            (
                tenant,
                kind,
                rules.rank(kind),
                rules.limits[kind],
                kind in rules.people_types,
                rules.max_people_per_identifier,
            )
            for kind in rules.priority
        ]
    return spark.createDataFrame(
        rows, "tenant_id string, id_type string, rank int, max_per_profile int, counts_people boolean, max_people int"
    )


def blocked_pattern(tenants: list[str], tenant: Column, id_type: Column, value: Column) -> Column:
    """The first blocked pattern `value` matches under its tenant's rules, or null."""
    matched = F.lit(None).cast("string")
    for name in tenants:
        rules = rules_for(name)
        for kind in rules.priority:
            for pattern in reversed(rules.blocked_patterns(kind)):
                matched = F.when((tenant == name) & (id_type == kind) & value.rlike(pattern), F.lit(pattern)).otherwise(
                    matched
                )
    return matched
