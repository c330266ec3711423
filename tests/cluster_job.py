"""Materialises days of a lake on the Spark master in CDP_SPARK_MASTER, in a process of its own (a
process holds one Spark context, and a Spark Connect session changes how PySpark builds columns in
the whole process): `python -m tests.cluster_job LAKE FIRST LAST [GROUP …]`, a day of events and
customers (`SELECTION`) unless asset groups are named. Run by test_spark_cluster.py and
test_spark_connect.py."""

import sys
from datetime import date

from dagster import DagsterInstance
from pyspark.sql import SparkSession

from cdp_resources.lake import LakeResource
from tests.conftest import run_assets

SELECTION = ["raw/app/events", "curated/events", "raw/shopify/customers", "curated/shopify_customers"]

if __name__ == "__main__":
    lake, first, last, groups = (
        LakeResource(base_uri=sys.argv[1]),
        date.fromisoformat(sys.argv[2]),
        date.fromisoformat(sys.argv[3]),
        sys.argv[4:],
    )
    with DagsterInstance.ephemeral() as instance:
        result = (
            run_assets(lake, instance, first, last, groups=groups)
            if groups
            else run_assets(lake, instance, first, last, SELECTION)
        )
    print(
        f"spark session: {type(SparkSession.active()).__module__}"
    )  # the run's (`pyspark.sql.connect.session` on Spark Connect)
    sys.exit(0 if result.success else 1)
