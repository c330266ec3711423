"""The raw-file sensor on a directory and on moto's S3 server: runs for exactly the affected days
and assets, a cursor that survives a restart, late files re-running an old day."""

from datetime import UTC, date, datetime

import pytest
from dagster import AssetKey, SkipReason, build_sensor_context

from cdp_assets.definitions import defs
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import encode_ndjson_gz, raw_key
from sensors.raw_files import raw_file_sensor

EVENTS, CURATED_EVENTS, ORDERS = (
    AssetKey(["raw", "app", "events"]),
    AssetKey(["curated", "events"]),
    AssetKey(["raw", "shopify", "orders"]),
)
# Events and orders carry identifiers: their days re-run the identity graph, resolution and profiles,
# the warehouse tables of all three and the dbt models and segments built on them.
IDENTITY = {
    AssetKey(path)
    for path in (
        ["identity", "graph"],
        ["identity", "customer_ids"],
        ["identity", "merges"],
        ["identity", "exclusions"],
        ["profiles", "customer_profiles"],
        ["profiles", "profile_history"],
        ["warehouse", "customer_ids"],
        ["warehouse", "customer_profiles"],
        ["marts", "customer_360"],
        ["segments", "segment_rfm"],
        ["segments", "segment_membership"],
        ["docs", "dbt_docs"],
    )
}
ORDER_TABLES = {
    AssetKey(path)
    for path in (
        ["raw", "shopify", "orders"],
        ["curated", "orders"],
        ["curated", "order_lines"],
        ["warehouse", "orders"],
        ["warehouse", "order_lines"],
        ["marts", "fct_orders"],
    )
}


@pytest.fixture
def lake(any_lake) -> LakeResource:
    return any_lake


def land(lake: LakeResource, provider: str, stream: str, day: date, flushed: datetime, seq: int = 0) -> str:
    key = raw_key("acme_corp", provider, stream, day, flushed, seq)
    lake.write_bytes(key, encode_ndjson_gz([{"id": seq}]))
    return key


def evaluate(lake: LakeResource, cursor: str | None):
    """One tick, as after a restart: a fresh context that only has the stored cursor."""
    context = build_sensor_context(cursor=cursor, resources={"lake": lake}, definitions=defs)
    return raw_file_sensor(context)


def test_runs_for_new_files_cursor_and_late_files(lake):
    first, second = date(2026, 1, 1), date(2026, 1, 2)
    land(lake, "app", "events", first, datetime(2026, 1, 1, 23, tzinfo=UTC))
    land(lake, "app", "events", first, datetime(2026, 1, 1, 23, tzinfo=UTC), seq=1)
    land(lake, "shopify", "orders", second, datetime(2026, 1, 2, 23, tzinfo=UTC))
    land(lake, "app", "events", date.today(), datetime.now(UTC))  # today: not a partition yet

    result = evaluate(lake, None)
    requests = {r.partition_key: r for r in result.run_requests}
    assert set(requests) == {"2026-01-01", "2026-01-02"}
    events_day, orders_day = set(requests["2026-01-01"].asset_selection), set(requests["2026-01-02"].asset_selection)
    assert {
        EVENTS,
        CURATED_EVENTS,
        AssetKey(["warehouse", "events"]),
        AssetKey(["marts", "fct_events"]),
    } | IDENTITY <= events_day
    assert not events_day & ORDER_TABLES and not any(
        key.path[0] in ("raw", "curated") for key in events_day - {EVENTS, CURATED_EVENTS}
    )
    assert (
        orders_day >= ORDER_TABLES | IDENTITY
        and EVENTS not in orders_day
        and AssetKey(["warehouse", "events"]) not in orders_day
    )
    assert requests["2026-01-01"].run_key == "2026-01-01|app/events@events_20260101T230000Z_0001.ndjson.gz"

    restarted = evaluate(lake, result.cursor)
    assert isinstance(restarted, SkipReason)

    land(lake, "app", "events", first, datetime(2026, 1, 4, 23, tzinfo=UTC))  # 3 days late
    late = evaluate(lake, result.cursor)
    (request,) = late.run_requests
    assert request.partition_key == "2026-01-01" and set(request.asset_selection) == events_day
    assert request.run_key != requests["2026-01-01"].run_key
    assert isinstance(evaluate(lake, late.cursor), SkipReason)


def test_unknown_streams_and_stray_keys_start_nothing(lake):
    land(lake, "shopify", "refunds", date(2026, 1, 3), datetime(2026, 1, 3, 23, tzinfo=UTC))
    lake.write_bytes("raw/acme_corp/notes.txt", b"hello")
    result = evaluate(lake, None)
    assert result.run_requests == [] and result.cursor
