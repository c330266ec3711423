"""The `cdp` command as a user runs it: a real subprocess, writing a real lake."""

import json
import subprocess
import sys
from pathlib import Path

from cdp_cli.demo import describe
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY

CDP = str(Path(sys.executable).parent / "cdp")


def test_generate_command(tmp_path):
    lake_dir = tmp_path / "lake"
    result = subprocess.run(
        [
            CDP,
            "generate",
            "--tenants",
            "shop_one",
            "--days",
            "2",
            "--customers",
            "300",
            "--seed",
            "3",
            "--start",
            "2026-03-01",
            "--lake",
            str(lake_dir),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
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
    assert "dead letters in curated/_dead_letters/{table}" in summary and lake.spark_path("raw/") in summary
