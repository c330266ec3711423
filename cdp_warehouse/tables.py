"""The warehouse tables, declared as data: which Delta table each is loaded from, how it is
partitioned in PostgreSQL (by day for the dated curated tables, by tenant for current-state
tables), its key and the indexes lookups use.

The curated tables carry only their unique key: dbt reads them through the staging views by event
day (partition pruning) and builds its facts with their own indexes (the models' `indexes`
config), so a join index here would only slow every load (PostgreSQL's `idx_scan` counted no
use of them over the demo's and the benchmark's dbt builds). The identity map keeps its lookup
index: the marts attribute orders and events to people by (tenant, id type, id value)."""

from dataclasses import dataclass, field

from cdp_resources import lake_paths
from cdp_transform.entities import EntitySpec
from cdp_transform.generic import CURATED_ENTITIES

SCHEMA = "raw_cdp"
STAGING_SCHEMA = "raw_cdp_loading"
BY_DAY, BY_TENANT = "event_date", "tenant_id"


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    lake_table: str  # the Delta table's path under the lake, e.g. "curated/orders"
    partition_by: str  # BY_DAY: one PostgreSQL partition per event day; BY_TENANT: one per tenant
    key: tuple[str, ...]  # unique in the table (includes the partition column)
    indexes: tuple[tuple[str, ...], ...] = field(default_factory=tuple)
    description: str = ""
    # A current-state table whose Delta table keeps every day: only each tenant's rows of its
    # latest value of this column are loaded.
    latest_of: str | None = None
    # A current-state curated table (one row per key across days): a run that writes its days may
    # remove older versions from other days, which a load then reloads too (`stale_days`).
    current_state: bool = False
    pii: tuple[str, ...] = ()  # personal columns the name patterns miss (a generic table's `x-cdp-pii` fields)

    @property
    def dated(self) -> bool:
        return self.partition_by == BY_DAY


def curated_table(spec: EntitySpec) -> WarehouseTable:
    """The warehouse table of a curated entity: by event day, keyed as the curated table is."""
    return WarehouseTable(
        spec.table,
        lake_paths.curated_path(spec.table),
        BY_DAY,
        ("tenant_id", *spec.key, "event_date"),
        description=spec.description,
        current_state=spec.current_state,
        pii=spec.pii,
    )


CURATED = [curated_table(spec) for spec in CURATED_ENTITIES]
PROFILES = WarehouseTable(
    "customer_profiles",
    lake_paths.PROFILES,
    BY_TENANT,
    ("tenant_id", "cdp_customer_id"),
    description="The unified customer profiles (golden records) as of the last run.",
)
IDENTITY_MAP = WarehouseTable(
    "customer_ids",
    lake_paths.MAP,
    BY_TENANT,
    ("tenant_id", "node_id"),
    (("tenant_id", "id_type", "id_value"),),
    description="Every identifier with the cdp_customer_id it resolved to.",
)

PREDICTIONS = WarehouseTable(
    "customer_predictions",
    lake_paths.PREDICTIONS,
    BY_TENANT,
    ("tenant_id", "cdp_customer_id"),
    description="Each buyer's churn and lifetime-value predictions, from the latest day whose models passed "
    "their quality gates (docs/predictions.md).",
    latest_of="as_of_date",
)

TABLES = [*CURATED, PROFILES, IDENTITY_MAP, PREDICTIONS]
BY_NAME = {table.name: table for table in TABLES}
