"""The PostgreSQL warehouse as a Dagster resource: `CDP_POSTGRES_URL`, else the embedded server's
`cdp` database as the pipeline's role `cdp_pipeline` (started on first use)."""

import os

import psycopg
from dagster import ConfigurableResource
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field

from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.warehouse_security import PIPELINE_ROLE


class WarehouseResource(ConfigurableResource):
    """Where the warehouse tables, dbt's models and the segments live."""

    url: str | None = Field(
        # The value, not an EnvVar: Dagster resolves EnvVars given to the constructor, not defaults.
        default_factory=lambda: os.environ.get("CDP_POSTGRES_URL") or None,
        description="PostgreSQL URL of the pipeline's role (CDP_POSTGRES_URL); unset: the embedded server's "
        "`cdp` database as `cdp_pipeline`",
    )

    copy_connections: int = Field(
        default=4,
        description="parallel COPY streams per table load (the server's ingest "
        "parallelism, not Spark's: more than its cores rarely helps)",
    )

    def dsn(self) -> str:
        return self.url or EmbeddedPostgres.default().start().url("cdp", PIPELINE_ROLE)

    def connect(self, autocommit: bool = False) -> psycopg.Connection:
        return psycopg.connect(self.dsn(), autocommit=autocommit)

    def dbt_env(self) -> dict[str, str]:
        """The connection as the environment variables `dbt_project/profiles.yml` reads."""
        parts = conninfo_to_dict(self.dsn())
        return {
            "CDP_DBT_HOST": str(parts.get("host", "127.0.0.1")),
            "CDP_DBT_PORT": str(parts.get("port", 5432)),
            "CDP_DBT_USER": str(parts.get("user", "cdp")),
            "CDP_DBT_PASSWORD": str(parts.get("password", "")),
            "CDP_DBT_DBNAME": str(parts.get("dbname", "cdp")),
        }
