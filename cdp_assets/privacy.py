"""The forget-request asset: each run of `lake_daily` (and `cdp privacy process`) works through the
queue of forget requests (`cdp_privacy.requests`), erasing each person everywhere
(`cdp_privacy.forget`) and recording the request's receipt."""

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from cdp_privacy.forget import forget
from cdp_privacy.requests import claim, complete, ensure_schema, fail
from cdp_resources.lake import LakeResource
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from partitions import daily_partitions

PRIVACY_OWNERS = ["team:data-platform"]


def process_requests(spark, lake: LakeResource, warehouse: WarehouseResource, log=None) -> list[dict]:
    """Forget every pending request's person, a tenant's requests in one pass; the receipts (no
    personal data), one per request."""
    done = []
    with warehouse.connect(autocommit=True) as conn:
        ensure_schema(conn)
        while requests := claim(conn):
            try:
                receipt = forget(spark, lake, warehouse, requests)
            except Exception as error:
                for request in requests:
                    fail(conn, request.id, error)  # the class only: messages can quote identifiers
                raise
            done += [complete(conn, request.id, receipt) for request in requests]
            if log is not None:
                log.info(f"forget requests {receipt['batch']}: removed {receipt['removed']} in {receipt['seconds']} s")
    return done


@asset(
    key=["privacy", "forget_requests"],
    group_name="privacy",
    owners=PRIVACY_OWNERS,
    kinds={"spark", "postgres", "delta"},
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    description="Works through the queue of forget requests (`cdp_privacy.forget_requests`, filled by "
    "`cdp privacy forget` or any client): each person is resolved through the identity map, added to the "
    "suppression list and erased from every zone (raw, dead letters, webhook queue, Delta tables with purge and "
    "vacuum, identity, profiles, warehouse and dbt tables, exports); each request gets a receipt. The partition "
    "range is irrelevant: every pending request is processed. See docs/privacy.md.",
)
def forget_requests(
    context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource, warehouse: WarehouseResource
) -> MaterializeResult:
    receipts = process_requests(spark.session_for(lake), lake, warehouse, context.log)
    removed = {}
    for receipt in receipts:
        for zone, count in receipt["removed"].items():
            removed[zone] = removed.get(zone, 0) + count
    return MaterializeResult(
        metadata={
            "requests_processed": len(receipts),
            "removed": MetadataValue.json(removed),
            # receipts as stored (timestamps as text), without the list of files
            "receipts": MetadataValue.json([{k: v for k, v in r.items() if k != "files_rewritten"} for r in receipts]),
        }
    )
