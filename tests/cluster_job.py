"""Materialises a day of events and customers on the Spark master in CDP_SPARK_MASTER (run by
test_spark_cluster.py in a process of its own, since a process holds one Spark context)."""

import sys
from datetime import date

from dagster import DagsterInstance

from cdp_resources.lake import LakeResource
from tests.conftest import run_assets

SELECTION = ["raw/app/events", "curated/events", "raw/shopify/customers", "curated/shopify_customers"]

if __name__ == "__main__":
    lake, day = LakeResource(base_uri=sys.argv[1]), date.fromisoformat(sys.argv[2])
    with DagsterInstance.ephemeral() as instance:
        sys.exit(0 if run_assets(lake, instance, day, day, SELECTION).success else 1)
