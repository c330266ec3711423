"""The environment Dagster runs in: DAGSTER_HOME under `.cdp/` and its PostgreSQL storage URL."""

import os
from pathlib import Path

from cdp_cli.backfill import EVENT_BATCH_SIZE
from cdp_resources.postgres_server import dagster_storage_url
from cdp_resources.settings import PROJECT_DIR, state_dir


def dagster_home() -> Path:
    """`.cdp/dagster_home`, holding a link to the project's dagster.yaml."""
    home = state_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(PROJECT_DIR / "dagster.yaml")
    return home


def prepare_dagster_environment() -> dict[str, str]:
    """Sets DAGSTER_HOME and CDP_DAGSTER_POSTGRES_URL (starting the embedded PostgreSQL if needed),
    and DAGSTER_EVENT_BATCH_SIZE, so a run over many days (a backfill from the UI too: its run
    inherits this environment) stores each asset's materialisations in batches, not one commit a day."""
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    os.environ["CDP_DAGSTER_POSTGRES_URL"] = dagster_storage_url()
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
    return {key: os.environ[key] for key in ("DAGSTER_HOME", "CDP_DAGSTER_POSTGRES_URL", "DAGSTER_EVENT_BATCH_SIZE")}
