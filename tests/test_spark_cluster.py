"""The same code on a real multi-process Spark cluster (`local-cluster[2,1,1024]`: a master and two
executor JVMs on 127.0.0.1) gives the same tables as local mode: nothing relies on driver-local state."""

import os
import shutil
import subprocess
import sys

import pytest

from cdp_resources.lake import LakeResource
from cdp_resources.settings import PROJECT_DIR
from cdp_sampledata.generator import GeneratorConfig, generate
from tests.cluster_job import SELECTION
from tests.conftest import assert_same_rows, run_assets

pytestmark = pytest.mark.slow


def test_local_cluster_matches_local_mode(spark, tmp_path, dagster_instance):
    config = GeneratorConfig(tenants=("acme_corp",), days=1, customers=400, seed=5)
    local = LakeResource(base_uri=str(tmp_path / "local"))
    generate(local, config, workers=1, progress=False)
    shutil.copytree(tmp_path / "local", tmp_path / "cluster")

    env = {**os.environ, "CDP_SPARK_MASTER": "local-cluster[2,1,1024]"}
    cluster = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.cluster_job",
            str(tmp_path / "cluster"),
            config.start.isoformat(),
            config.start.isoformat(),
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cluster.returncode == 0, cluster.stderr[-4000:]
    assert run_assets(local, dagster_instance, config.start, config.start, SELECTION).success

    for name in ("events", "shopify_customers"):
        assert_same_rows(
            *(spark.read.format("delta").load(f"{tmp_path}/{side}/curated/{name}") for side in ("local", "cluster")),
            name,
        )
    assert (
        spark.read.format("delta")
        .load(f"{tmp_path}/cluster/curated/shopify_customers")
        .where("phone LIKE '+%'")
        .count()
        > 0
    )
