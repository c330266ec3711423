"""The dbt project as Dagster assets: every model an asset downstream of the warehouse tables it
reads (sources map to `warehouse/<table>`), every dbt test an asset check. Models get the run's
partition window as dbt vars, and a backfill runs dbt once over the whole range. The project and
its manifest: `cdp_resources/dbt_project.py` (prepared under `dagster dev`, beforehand elsewhere).

`segments/segment_membership` collects every model under `models/segments/` (found in the
manifest, so an analyst's new segment model needs no Python) into one table per as-of day, and
`docs/dbt_docs` runs `dbt docs generate` for the analysts' catalogue and lineage.
"""

import json
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindow,
    asset,
    asset_check,
)
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from cdp_assets.freshness import FRESHNESS_LAYERS, MARTS_FRESHNESS
from cdp_assets.keys import MEMBERSHIP_KEY
from cdp_resources.dbt_project import dbt_project, docs_path, manifest_is_current
from cdp_resources.warehouse import WarehouseResource
from cdp_resources.warehouse_security import ensure_security, protect
from partitions import daily_partitions, late_days

ANALYTICS_OWNERS = ["team:analytics"]
SEGMENT_FOLDER = "segments"
MEMBERSHIP = "segments.segment_membership"


class CdpDbtTranslator(DagsterDbtTranslator):
    """Models keyed by their schema (staging/, intermediate/, marts/, segments/), sources by the warehouse asset that loads them."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey(["warehouse", dbt_resource_props["name"]])
        return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return dbt_resource_props["schema"] if dbt_resource_props["resource_type"] != "source" else "warehouse"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ANALYTICS_OWNERS

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> AssetSpec:
        """A model's spec, with the freshness target (yesterday by 08:00 UTC) on the marts and segments."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        if (
            spec.key.path[0] in FRESHNESS_LAYERS
            and manifest.get("nodes", {}).get(unique_id, {}).get("resource_type") == "model"
        ):
            return spec.replace_attributes(freshness_policy=MARTS_FRESHNESS)
        return spec


# Code references: each model's asset links to its SQL file in the UI.
TRANSLATOR = CdpDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)


def dbt_vars(window: TimeWindow) -> dict[str, str | int]:
    """The run's partition window as the dbt vars the incremental models and segments read, and the
    platform's late-data window (`CDP_LATE_DAYS`) the incremental models reopen before it."""
    first, last = window.start.date(), window.end.date() - timedelta(days=1)
    return {
        "min_date": first.isoformat(),
        "max_date": last.isoformat(),
        "as_of_date": last.isoformat(),
        "late_days": late_days(),
    }


def segment_models(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Every model under models/segments/: name -> its relation (schema.table; the database is the connection's)."""
    return {
        node["name"]: f'"{node["schema"]}"."{node["alias"]}"'
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == SEGMENT_FOLDER
    }


def build_dbt_definitions(project: DbtProject) -> tuple[list, list]:
    """(assets, asset checks) for one dbt project: the dbt models, segment membership and the docs."""
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"dbt's manifest is not prepared ({project.manifest_path}): run `make setup`, or `dagster-dbt project "
            "prepare-and-package --file cdp_resources/dbt_project.py`"
        )
    manifest = json.loads(project.manifest_path.read_text())
    segments = segment_models(manifest)

    @dbt_assets(
        manifest=manifest,
        project=project,
        dagster_dbt_translator=TRANSLATOR,
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        name="dbt_models",
    )
    def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        os.environ.update(warehouse.dbt_env())
        args = ["build", "--vars", json.dumps(dbt_vars(context.partition_time_window))]
        yield from dbt.cli(args, context=context).stream()

    segment_keys = [
        TRANSLATOR.get_asset_key(manifest["nodes"][f"model.{manifest['metadata']['project_name']}.{name}"])
        for name in sorted(segments)
    ]

    @asset(
        key=MEMBERSHIP_KEY,
        deps=segment_keys,
        freshness_policy=MARTS_FRESHNESS,
        group_name="segments",
        owners=ANALYTICS_OWNERS,
        kinds={"postgres"},
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        description="Every member of every segment, one row per (tenant, segment, cdp_customer_id) and as-of day, "
        "collected from all models in dbt_project/models/segments/ (custom/ included).",
    )
    def segment_membership(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        as_of = dbt_vars(context.partition_time_window)["as_of_date"]
        with warehouse.connect() as conn:
            sizes = publish_membership(conn, segments, as_of)
        context.log.info(f"segment membership as of {as_of}: {sizes}")
        return MaterializeResult(
            metadata={
                "as_of_date": as_of,
                "dagster/row_count": sum(sizes.values()),
                "segments": len(sizes),
                "segment_sizes": MetadataValue.json(sizes),
                "models": MetadataValue.json(sorted(segments)),
                "dagster/table_name": f"cdp.{MEMBERSHIP}",
            }
        )

    @asset_check(asset=MEMBERSHIP_KEY, blocking=True, description="Every member is a person in marts.customer_360.")
    def members_are_customers(warehouse: WarehouseResource) -> AssetCheckResult:
        with warehouse.connect() as conn:
            (orphans,) = conn.execute(
                f"SELECT count(*) FROM {MEMBERSHIP} m WHERE NOT EXISTS (SELECT 1 FROM marts.customer_360 c "
                "WHERE c.tenant_id = m.tenant_id AND c.cdp_customer_id = m.cdp_customer_id)"
            ).fetchone()
        return AssetCheckResult(passed=orphans == 0, metadata={"members_not_in_customer_360": orphans})

    @asset(
        key=AssetKey(["docs", "dbt_docs"]),
        deps=sorted(dbt_models.keys),
        group_name="docs",
        owners=ANALYTICS_OWNERS,
        kinds={"dbt"},
        description="dbt's documentation site (models, columns, tests, lineage from the loaded tables to "
        "every segment), generated against the warehouse. Serve it with `cdp dbt docs`.",
    )
    def dbt_docs(
        context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        os.environ.update(warehouse.dbt_env())
        target = docs_path(project)
        dbt.cli(["docs", "generate"], target_path=target).wait()
        return MaterializeResult(
            metadata={
                "index": MetadataValue.path(str(target / "index.html")),
                "serve": "cdp dbt docs  (http://127.0.0.1:8080)",
            }
        )

    return [dbt_models, segment_membership, dbt_docs], [members_are_customers]


def publish_membership(conn, segments: Mapping[str, str], as_of: str) -> dict[str, int]:
    """Replace the as-of day's rows of segment_membership with the union of the segment models, in
    one transaction; returns members per segment."""
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {MEMBERSHIP} (
        tenant_id text NOT NULL, segment text NOT NULL, cdp_customer_id text NOT NULL, as_of_date date NOT NULL,
        source_model text NOT NULL, PRIMARY KEY (as_of_date, tenant_id, segment, cdp_customer_id))""")
    ensure_security(conn)
    protect(conn, *MEMBERSHIP.split("."))
    union = " UNION ALL ".join(
        f"SELECT tenant_id, segment, cdp_customer_id, '{name}' AS model FROM {relation}"
        for name, relation in sorted(segments.items())
    )
    with conn.transaction():
        conn.execute(f"DELETE FROM {MEMBERSHIP} WHERE as_of_date = %s", (as_of,))
        if union:
            conn.execute(
                f"INSERT INTO {MEMBERSHIP} SELECT tenant_id, segment, cdp_customer_id, %s::date, min(model) "
                f"FROM ({union}) AS members GROUP BY tenant_id, segment, cdp_customer_id",
                (as_of,),
            )
    return dict(
        conn.execute(
            f"SELECT segment, count(*) FROM {MEMBERSHIP} WHERE as_of_date = %s GROUP BY segment ORDER BY segment",
            (as_of,),
        ).fetchall()
    )


# Under `dagster dev`, dagster-dbt's preparer parses the project when the code loads; only when the
# manifest is stale here, so that reloading unchanged code does not wait for `dbt parse`.
if not manifest_is_current(dbt_project):
    dbt_project.prepare_if_dev()
dbt_definitions, dbt_checks = build_dbt_definitions(dbt_project)
