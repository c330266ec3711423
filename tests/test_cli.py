"""The `cdp` command as a user runs it: a real subprocess, writing a real lake."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cdp_assets.definitions import defs
from cdp_cli.demo import describe
from cdp_resources.lake import LakeResource
from cdp_resources.local_ports import free_port
from cdp_resources.raw_zone import RAW_KEY

CDP = str(Path(sys.executable).parent / "cdp")


def test_generate_command(tmp_path):
    lake_dir = tmp_path / "lake"
    result = subprocess.run(
        [CDP, "generate", "--tenants", "shop_one", "--days", "2", "--customers", "300", "--seed", "3",
         "--start", "2026-03-01", "--lake", str(lake_dir), "--workers", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lake = LakeResource(base_uri=str(lake_dir))
    manifest = json.loads(lake.read_bytes("truth/manifest.json"))
    total = sum(manifest["records"].values())
    assert f"{total:,} records" in result.stdout and "records/s" in result.stdout
    keys = [obj.key for obj in lake.list("raw/")]
    assert keys and all(RAW_KEY.match(key) for key in keys)
    assert {key.split("/")[1] for key in keys} == {"shop_one"}
    assert min(key.split("day=")[1][:2] for key in keys if "/day=" in key) == "01"
    assert "generating" in result.stderr  # the progress bar


def test_postgres_bindir_and_bad_input():
    found = subprocess.run([CDP, "postgres", "bindir"], capture_output=True, text=True)
    assert found.returncode == 0 and (Path(found.stdout.strip()) / "initdb").exists()
    wrong = subprocess.run([CDP, "generate", "--days", "many"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "invalid int value" in wrong.stderr


def test_demo_summary_of_a_failed_run_names_the_zones(tmp_path):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    summary = describe({"lake": lake, "run_id": "r1", "success": False})
    assert summary.splitlines()[0] == "run r1: FAILED"
    assert f"dead letters in curated/_dead_letters/{{table}}" in summary and lake.spark_path("raw/") in summary


WORKSPACE_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  __typename ... on PythonError { message } ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } } } } } } }"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def test_dev_serves_the_ui_on_the_projects_workspace(dagster_instance, tmp_path):
    """`cdp dev` (what `make dev` runs): Dagster's webserver and daemon on the project's workspace,
    with the instance of DAGSTER_HOME (the test's), its code location loaded with every asset."""
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    dev = subprocess.Popen([CDP, "dev", "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        entries, deadline = None, time.monotonic() + 180
        while time.monotonic() < deadline and dev.poll() is None:
            try:
                entries = graphql(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
                if entries and all(e["locationOrLoadError"] for e in entries):
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(1)
        assert entries, f"no answer from `cdp dev`:\n{(tmp_path / 'dev.log').read_text()[-3000:]}"
        (location,) = entries
        loaded = location["locationOrLoadError"]
        assert (location["name"], loaded["__typename"]) == ("cdp", "RepositoryLocation"), loaded
        served = {"/".join(node["assetKey"]["path"]) for repository in loaded["repositories"] for node in repository["assetNodes"]}
        assert served == {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        log.close()
