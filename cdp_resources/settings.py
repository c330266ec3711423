"""Where the platform keeps its state, and the environment variables that move it elsewhere.

Every setting has a safe local default so the platform runs with no configuration: state under
`.cdp/` in the project directory, the lake in `.cdp/lake`, an embedded PostgreSQL, `local[*]` Spark.
"""

import os
from pathlib import Path

from dagster import EnvVar

PROJECT_DIR = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Runtime state (lake, database, jar cache): `CDP_STATE_DIR`, default `<project>/.cdp`."""
    return Path(os.environ.get("CDP_STATE_DIR", PROJECT_DIR / ".cdp")).resolve()


def default_lake_uri() -> str:
    return str(state_dir() / "lake")


def env_or_default(name: str, default: str | None) -> str | None:
    """`EnvVar(name)` when the variable is set (so Dagster shows where the value came from), else `default`."""
    return EnvVar(name) if os.environ.get(name) else default


def spark_master() -> str:
    return os.environ.get("CDP_SPARK_MASTER", "local[*]")
