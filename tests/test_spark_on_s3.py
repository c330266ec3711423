"""The Spark assets on a lake in S3 (moto's server on 127.0.0.1, reached by boto3 and by Hadoop's
S3A over HTTP) give the same tables as on a local directory: a lake moves to S3 by configuration."""

from datetime import timedelta

import pytest

from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import MAP, PROFILES
from cdp_transform.curated_store import read_dead_letters
from cdp_transform.entities import ENTITIES
from tests.conftest import LAKE_DAILY_CONFIG, assert_same_rows, run_assets

pytestmark = pytest.mark.slow
LAST = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)


def test_s3_lake_gives_the_tables_of_a_local_lake(
    spark_resource, s3_bucket, s3_endpoint, lake_daily_run, dagster_instance
):
    """The whole `lake_daily` sample's inputs (raw files, company references) copied into S3 and run
    there (raw, curated, identity and profiles in one historic run) give the tables the job gave
    on its local lake, row for row."""
    local = lake_daily_run["lake"]
    s3 = LakeResource(base_uri=f"s3://{s3_bucket}/lake", s3_endpoint_url=s3_endpoint)
    for zone in ("raw/", "reference/"):
        for obj in local.list(zone):
            s3.write_bytes(obj.key, local.read_bytes(obj.key))
    groups = ["raw", "curated", "identity", "profiles"]
    assert run_assets(s3, dagster_instance, LAKE_DAILY_CONFIG.start, LAST, groups=groups).success

    assert s3.list("curated/events/_delta_log/") and s3.list(f"{PROFILES}/_delta_log/")
    spark = spark_resource.session_for(s3)
    for name in sorted({f"curated/{spec.table}" for spec in ENTITIES} | {MAP, PROFILES}):
        assert_same_rows(*(spark.read.format("delta").load(lake.spark_path(name)) for lake in (local, s3)), name)
    assert_same_rows(read_dead_letters(spark, local), read_dead_letters(spark, s3), "dead letters")
