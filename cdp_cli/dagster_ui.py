"""The Dagster UI that `cdp dev` serves: where it listens, and reloading its code location.

The definitions read the schema registry when they load, so a stream registered by `cdp schemas
import` appears in a running UI only once its code location reloads. `cdp dev` records its host,
port and process id in `$DAGSTER_HOME/cdp-dev.json` (DAGSTER_HOME: `.cdp/dagster_home` unless
set) before it becomes `dagster dev` (same process id); `reload_code_location` asks that
webserver to reload over its GraphQL API (dagster-graphql's client), and otherwise says how to.
"""

import json
import os
from pathlib import Path

import yaml

from cdp_resources.settings import PROJECT_DIR, state_dir

RECORD = "cdp-dev.json"


def _record_path() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or state_dir() / "dagster_home") / RECORD


def location_name() -> str:
    """The code location's name in the project's workspace.yaml."""
    workspace = yaml.safe_load((PROJECT_DIR / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    return entry["python_module"]["location_name"]


def record_webserver(host: str, port: int) -> None:
    """Records where this process (about to exec `dagster dev`) serves the UI."""
    path = _record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}))


def _running() -> dict | None:
    """The recorded webserver, when its process is still alive."""
    try:
        record = json.loads(_record_path().read_text())
        os.kill(record["pid"], 0)  # no signal: only whether the process exists
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def reload_code_location(timeout: int = 120) -> str:
    """Reloads the code location of the running `cdp dev`; what happened, or how to do it by hand."""
    name = location_name()
    by_hand = (
        f"reload the code location '{name}' in the Dagster UI (Deployment → Code locations → Reload) "
        "or restart `cdp dev` to see the new assets"
    )
    record = _running()
    if record is None:
        return f"no running `cdp dev` found: {by_hand}"
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError, ReloadRepositoryLocationStatus

    # A webserver listening on every interface answers on the loopback one.
    host = "127.0.0.1" if record["host"] in ("0.0.0.0", "::", "") else record["host"]
    where = f"http://{host}:{record['port']}"
    try:
        client = DagsterGraphQLClient(host, port_number=record["port"], timeout=timeout)
        result = client.reload_repository_location(name)
    except (DagsterGraphQLClientError, OSError) as error:  # the client wraps connection errors as either
        return f"could not reach the Dagster UI at {where} ({type(error).__name__}): {by_hand}"
    if result.status == ReloadRepositoryLocationStatus.SUCCESS:
        return f"reloaded the code location '{name}' of the Dagster UI at {where}"
    return f"the Dagster UI at {where} could not reload '{name}' ({result.failure_type}: {result.message}): {by_hand}"
