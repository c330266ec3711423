"""`cdp dev` (what `make dev` runs: `dagster dev` on the project's workspace) serves the UI with the graph
loaded: started for real, queried over HTTP, stopped by PID; `cdp schemas import` then makes it
reload its code location, and the new stream's assets appear."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cdp_assets.definitions import defs
from cdp_resources.local_ports import free_port
from cdp_resources.settings import PROJECT_DIR

pytestmark = pytest.mark.slow
ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName description opNames } }"
LOAD_ERRORS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { ... on PythonError { message } } } } } }"


def _get(url: str, body: dict | None = None, timeout: float = 10) -> dict:
    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def test_dagster_dev_serves_the_graph(postgres, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(PROJECT_DIR / "dagster.yaml")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CDP_DAGSTER_POSTGRES_URL": postgres.url("dagster"),
        "CDP_LAKE_URI": str(tmp_path / "lake"),
        "CDP_SCHEMA_DIR": str(tmp_path / "schemas"),  # nothing registered yet
    }
    cdp = Path(sys.executable).parent / "cdp"
    log = open(tmp_path / "dagster-dev.log", "wb")  # noqa: SIM115 (closed after the server stops, in finally)
    process = subprocess.Popen(
        [str(cdp), "dev", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            try:
                info = _get(f"{base}/server_info")
                entries = _get(f"{base}/graphql", {"query": LOAD_ERRORS_QUERY})["data"]["workspaceOrError"][
                    "locationEntries"
                ]
                assert not [e for e in entries if (e["locationOrLoadError"] or {}).get("message")], (
                    entries
                )  # the code did not load
                nodes = _get(f"{base}/graphql", {"query": ASSETS_QUERY})["data"]["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not come up in 180 s"
            time.sleep(2)
        assert "dagster_webserver_version" in info
        by_key = {"/".join(node["assetKey"]["path"]): node for node in nodes}
        assert set(by_key) == {key.to_user_string() for key in defs.resolve_all_asset_keys()}
        assert by_key["curated/events"]["groupName"] == "curated"
        assert "duplicates removed" in by_key["curated/events"]["description"]
        assert by_key["marts/customer_360"]["groupName"] == "marts"
        assert "One row per person" in by_key["marts/customer_360"]["description"]

        catalog = {"streams": [{"tap_stream_id": "deals", "stream": "deals", "key_properties": ["id"], "schema": {
            "type": "object", "properties": {"id": {"type": ["integer"]}, "closed_at": {"type": ["string"]}}}}]}  # fmt: skip
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        imported = subprocess.run(
            [str(cdp), "schemas", "import", str(tmp_path / "catalog.json"), "--provider", "pipedrive",
             "--event-time", "deals=closed_at"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        assert f"reloaded the code location 'cdp' of the Dagster UI at {base}" in imported.stdout
        nodes = _get(f"{base}/graphql", {"query": ASSETS_QUERY})["data"]["assetNodes"]
        new = {"/".join(node["assetKey"]["path"]) for node in nodes} - set(by_key)
        assert new == {"raw/pipedrive/deals", "curated/pipedrive_deals", "warehouse/pipedrive_deals"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
