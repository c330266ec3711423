"""Forgetting people: resolve each request through the identity map, add them to the suppression
list (first, so that nothing about them lands while the erasure runs), erase them from every zone,
ask the destinations that may have received them to delete them, and make the receipt.

The pending requests of one tenant are erased together, in one pass over each zone: the cost is
in reading the zones (every raw file, every Delta table), not in the number of people, so a batch
costs about what one request costs. Their receipts then share the counts, and say so (`batch`).

Zones, in order: raw files, the edge's and activation's dead letters, audience and file exports
(`lake_files`); the Delta tables (`delta`); the warehouse and the webhook queue (`warehouse`).
"""

import functools
import time
from collections import Counter

from pyspark.sql import SparkSession

from cdp_activation.config import load_destinations
from cdp_activation.senders import FileSender, HttpSender
from cdp_common.suppression import SuppressionList
from cdp_privacy.delta import erase_delta
from cdp_privacy.lake_files import FileErasure, erase_dead_letters, erase_parquet, erase_raw
from cdp_privacy.person import Person, resolve
from cdp_privacy.requests import ForgetRequest
from cdp_privacy.warehouse import erase_warehouse, erase_webhook_queue
from cdp_resources.lake import LakeResource
from cdp_resources.warehouse import WarehouseResource


def _delete_at_destinations(lake: LakeResource, person: Person, files: FileErasure) -> dict[str, str]:
    """Each destination's outcome: file destinations rewritten like the lake's exports, HTTP ones
    sent a delete batch with the person's ids and identifier hashes (never raw values)."""
    outcomes = {}
    records = [
        {
            "cdp_customer_id": customer_id,
            "email_sha256": person.values("email_sha256"),
            "phone_sha256": person.values("phone_sha256"),
        }
        for customer_id in sorted(person.customer_ids)
    ]
    for destination in load_destinations():
        if destination.type == "file":
            sender = FileSender(destination, lake)
            erase_parquet(sender.target, f"{sender.prefix}{person.tenant}/", "destination_exports", person.keys, files)
            outcomes[destination.name] = "rewritten"
        elif records:
            sender = HttpSender(destination)
            try:
                delivery = sender.forget(person.tenant, records)
            finally:
                sender.close()
            outcomes[destination.name] = "deleted" if delivery.ok else f"failed after {delivery.tries} tries"
    return outcomes


def forget(
    spark: SparkSession, lake: LakeResource, warehouse: WarehouseResource, requests: list[ForgetRequest]
) -> dict:
    """Erase the people `requests` (of one tenant) name everywhere; the receipt (counts, files,
    seconds per step) they share."""
    seconds, started = {}, time.monotonic()
    tenant = requests[0].tenant

    def step(name: str) -> None:
        nonlocal started
        seconds[name] = round(time.monotonic() - started, 3)
        started = time.monotonic()

    people = [resolve(spark, lake, tenant, r.id_type, r.identifier) for r in requests]
    person = functools.reduce(Person.join, people)
    keys = person.keys
    suppressed = SuppressionList(lake, tenant).add(keys)
    step("resolve")
    files = FileErasure()
    erase_raw(lake, tenant, keys, files)
    step("raw")
    erase_dead_letters(lake, tenant, keys, files)
    step("dead_letters")
    erase_parquet(lake, f"audiences/{tenant}/", "audience_exports", keys, files)
    destinations = _delete_at_destinations(lake, person, files)
    step("exports")
    delta = erase_delta(spark, lake, person)
    step("delta")
    with warehouse.connect() as conn:
        tables = erase_warehouse(conn, person, delta.order_ids)
        queued = erase_webhook_queue(conn, person)
    step("warehouse")
    removed = Counter(files.removed)
    removed["delta_rows"] = sum(delta.removed.values())
    removed["warehouse_rows"] = sum(tables.values())
    removed["webhook_queue"] = queued
    return {
        "tenant": tenant,
        "batch": sorted(r.id for r in requests),
        "profiles": len(person.customer_ids),
        "identifiers": len(person.identifiers),
        "suppression_digests_added": suppressed,
        "removed": dict(removed),
        "delta_tables": {path: n for path, n in delta.removed.items() if n},
        "delta_files_vacuumed": sum(delta.files_removed.values()),
        "delta_seconds": {step: round(n, 3) for step, n in delta.seconds.items()},
        "warehouse_tables": dict(tables),
        "files_rewritten": sorted(files.files),
        "destinations": destinations,
        "seconds": seconds,
    }
