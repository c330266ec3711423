"""Activation assets: `activation/audiences` exports every segment's members of the day to the lake
as Parquet with their changes (`cdp_activation/audiences.py`), and one `activation/sync_<name>`
per destination in destinations.yaml sends them on (`cdp_activation/sync.py`).

A run over a range of days (a backfill) exports and syncs the range's last day only:
segment_membership publishes one snapshot per run, the range's last day, so earlier days of the
range have no membership of their own to export, and a destination wants the audience as it is now.
"""

from datetime import timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from cdp_activation.audiences import audiences_of, export_audiences
from cdp_activation.config import Destination, load_destinations, raw_pii_wanted
from cdp_activation.sync import sync_destination
from cdp_assets.keys import AUDIENCES_KEY, MEMBERSHIP_KEY
from cdp_resources.lake import LakeResource
from cdp_resources.warehouse import WarehouseResource
from partitions import daily_partitions

ACTIVATION_OWNERS = ["team:data-platform"]


def _last_day(context: AssetExecutionContext):
    return context.partition_time_window.end.date() - timedelta(days=1)


@asset(
    key=AUDIENCES_KEY,
    deps=[MEMBERSHIP_KEY],
    group_name="activation",
    owners=ACTIVATION_OWNERS,
    kinds={"parquet", "postgres"},
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    description="Every segment's members of the day with their personalisation fields (segment_membership ⋈ "
    "marts.customer_360 in one streamed query) as Parquet under audiences/{tenant}/{segment}/date=…/, "
    "identifiers hashed for ad platforms, plus the members added, changed and removed since the "
    "previous export. A range exports its last day.",
)
def audiences(context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource) -> MaterializeResult:
    day = _last_day(context)
    destinations = load_destinations()
    with warehouse.connect() as conn:
        exports = export_audiences(
            conn, lake, day, lambda tenant, segment: raw_pii_wanted(destinations, tenant, segment)
        )
    by_audience = {
        f"{e.tenant}/{e.segment}": {
            "members": e.members,
            "added": e.added,
            "changed": e.changed,
            "removed": e.removed,
            "files": len(e.files),
        }
        for e in exports
    }
    context.log.info(f"audiences of {day}: {by_audience}")
    return MaterializeResult(
        metadata={
            "as_of_date": day.isoformat(),
            "audiences": len(exports),
            "dagster/row_count": sum(e.members for e in exports),
            "added": sum(e.added for e in exports),
            "removed": sum(e.removed for e in exports),
            "files": sum(len(e.files) for e in exports),
            "by_audience": MetadataValue.json(by_audience),
            "path": MetadataValue.path(lake.spark_path("audiences/")),
        }
    )


def sync_asset(destination: Destination) -> AssetsDefinition:
    @asset(
        key=AssetKey(["activation", f"sync_{destination.name}"]),
        deps=[AUDIENCES_KEY],
        group_name="activation",
        owners=ACTIVATION_OWNERS,
        kinds={"parquet" if destination.type == "file" else "api"},
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        description=f"Sync ({destination.mode}) of the day's audiences to the {destination.type} destination "
        f"`{destination.name}` (destinations.yaml), members whose `{destination.purpose}` consent is granted "
        "only (unknown: the tenant's default, deny unless configured); undeliverable batches go to the lake's "
        "dead-letter zone under dlq/{tenant}/activation/delivery_failed/.",
        metadata={"mode": destination.mode, "raw_pii": destination.raw_pii, "purpose": destination.purpose},
    )
    def _sync(context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource) -> MaterializeResult:
        day = _last_day(context)
        with warehouse.connect() as conn:
            candidates = audiences_of(conn, day)
        results = sync_destination(lake, destination, candidates, day)
        by_audience = {
            f"{r.tenant}/{r.segment}": {
                "members": r.members,
                "added": r.added,
                "changed": r.changed,
                "removed": r.removed,
                "excluded_for_consent": r.excluded_for_consent,
                "sent": r.sent,
                "failed": r.failed,
                **({"skipped": r.skipped} if r.skipped else {}),
            }
            for r in results
        }
        failed = sum(r.failed for r in results)
        if failed:
            context.log.warning(f"{destination.name}: {failed} records not delivered, dead-lettered")
        return MaterializeResult(
            metadata={
                "as_of_date": day.isoformat(),
                "members": sum(r.members for r in results),
                "added": sum(r.added for r in results),
                "removed": sum(r.removed for r in results),
                "excluded_for_consent": sum(r.excluded_for_consent for r in results),
                "sent": sum(r.sent for r in results),
                "failed": failed,
                "batches": sum(r.batches for r in results),
                "by_audience": MetadataValue.json(by_audience),
                "dead_letter_files": MetadataValue.json(sorted({f for r in results for f in r.dead_letter_files})),
            }
        )

    return _sync


activation_assets = [audiences, *(sync_asset(d) for d in load_destinations())]
