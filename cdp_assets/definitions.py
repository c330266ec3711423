"""The one `Definitions` object that `dagster dev` (workspace.yaml) loads."""

from dagster import Definitions, in_process_executor, with_source_code_references

from cdp_assets.activation import activation_assets
from cdp_assets.curated import curated_tables
from cdp_assets.dbt import dbt_checks, dbt_definitions
from cdp_assets.identity import identity_assets
from cdp_assets.insights import insights_assets
from cdp_assets.maintenance import delta_maintenance, weekly_maintenance_schedule
from cdp_assets.predictions import prediction_assets
from cdp_assets.privacy import forget_requests
from cdp_assets.raw import raw_assets
from cdp_assets.serving import serving_tables
from cdp_assets.sources import source_definitions
from cdp_assets.warehouse import warehouse_assets
from cdp_resources.dbt_project import dbt_cli, dbt_project
from cdp_resources.lake import LakeResource
from cdp_resources.settings import default_lake_uri, env_or_default
from cdp_resources.spark import SparkDeltaResource
from cdp_resources.warehouse import WarehouseResource
from sensors.raw_files import raw_file_sensor
from sensors.run_events import run_event_sensors
from sensors.schedules import lake_daily_job, lake_daily_schedule

sources = source_definitions()

defs = Definitions(
    # Each asset links to the code that makes it in the UI (its Python function; a dbt model's SQL file too).
    assets=with_source_code_references(
        [
            *sources.assets,
            *raw_assets,
            curated_tables,
            *identity_assets,
            *prediction_assets,
            *warehouse_assets,
            *dbt_definitions,
            *activation_assets,
            *insights_assets,
            serving_tables,
            forget_requests,
        ]
    ),
    asset_checks=dbt_checks,
    jobs=[lake_daily_job, delta_maintenance, *sources.jobs],
    schedules=[lake_daily_schedule, weekly_maintenance_schedule, *sources.schedules],
    sensors=[raw_file_sensor, *run_event_sensors],
    # One process per run, so every Spark asset of a run shares one Spark session.
    executor=in_process_executor,
    resources={
        "lake": LakeResource(
            base_uri=env_or_default("CDP_LAKE_URI", default_lake_uri()),
            s3_endpoint_url=env_or_default("CDP_S3_ENDPOINT_URL", None),
            s3_region=env_or_default("CDP_S3_REGION", "us-east-1"),
        ),
        "spark": SparkDeltaResource(master=env_or_default("CDP_SPARK_MASTER", "local[*]")),
        "warehouse": WarehouseResource(url=env_or_default("CDP_POSTGRES_URL", None)),
        "dbt": dbt_cli(dbt_project),
    },
)
