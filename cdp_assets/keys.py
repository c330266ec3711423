"""The asset keys one asset module needs of another's assets: the only thing asset modules share."""

from dagster import AssetKey


def raw_key(provider: str, stream: str) -> AssetKey:
    return AssetKey(["raw", provider, stream])


def curated_key(table: str) -> AssetKey:
    return AssetKey(["curated", table])


def warehouse_key(table: str) -> AssetKey:
    return AssetKey(["warehouse", table])


GRAPH_KEY = AssetKey(["identity", "graph"])
MAP_KEY = AssetKey(["identity", "customer_ids"])
PROFILES_KEY = AssetKey(["profiles", "customer_profiles"])
MEMBERSHIP_KEY = AssetKey(["segments", "segment_membership"])
AUDIENCES_KEY = AssetKey(["activation", "audiences"])
METRICS_KEY = AssetKey(["insights", "daily_metrics"])
FINDINGS_KEY = AssetKey(["insights", "findings"])
PREDICTIONS_KEY = AssetKey(["predictions", "customer_scores"])
SERVING_KEY = AssetKey(["api", "serving_tables"])
