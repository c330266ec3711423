"""The `cdp` command as a user runs it: a real subprocess, writing a real lake."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import AssetSelection, Definitions, asset, define_asset_job

from cdp_assets.dbt import MEMBERSHIP
from cdp_cli.demo import describe, execute_with_progress
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz
from tests.conftest import LAKE_DAILY_CONFIG

CDP = str(Path(sys.executable).parent / "cdp")
DAY = "2026-03-01T10:00:00Z"


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


@pytest.mark.parametrize(
    "where, given",
    [("local", "the root above drops/"), ("local", "the drops folder itself"), ("s3", "the drops folder itself")],
)
def test_drops_process_takes_the_root_or_the_drops_folder(request, tmp_path, where, given):
    drop_root = (
        LakeResource(base_uri=str(tmp_path / "drop-root"))
        if where == "local"
        else LakeResource(
            base_uri=f"s3://{request.getfixturevalue('s3_bucket')}/exports",
            s3_endpoint_url=request.getfixturevalue("s3_endpoint"),
        )
    )
    events = [
        {"message_id": f"m{n}", "type": "track", "event": "page_view", "anonymous_id": f"a{n}", "timestamp": DAY}
        for n in range(3)
    ]
    drop_root.write_bytes(
        "drops/acme/app/events/export.jsonl", b"".join(json.dumps(e).encode() + b"\n" for e in events)
    )
    location = drop_root.base_uri if given.startswith("the root") else drop_root.base_uri.rstrip("/") + "/drops/"
    lake_dir = tmp_path / "target-lake"
    env = {**os.environ, "CDP_S3_ENDPOINT_URL": drop_root.s3_endpoint_url or ""}
    command = [CDP, "drops", "process", "--drops", location, "--lake", str(lake_dir)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    where = drop_root.spark_path("drops/")
    assert first.stdout.splitlines()[-1].startswith(f"1 drop files processed from {where} ")
    assert "drops/acme/app/events/export.jsonl: 3 records, 3 landed, 0 dead-lettered" in first.stdout
    lake = LakeResource(base_uri=str(lake_dir))
    landed = [r for obj in lake.list("raw/") for r in decode_ndjson_gz(lake.read_bytes(obj.key))]
    assert sorted(r["message_id"] for r in landed) == ["m0", "m1", "m2"]
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith(f"0 drop files processed from {where} ")


def test_a_demo_run_shows_one_line_per_step_and_logs_the_rest(dagster_instance, tmp_path, capfd):
    """What `cdp demo` does with a run's output, on a small job whose steps write to stdout and stderr,
    start a process that writes to both, log through Dagster, and fail: the terminal gets one line per
    finished step; everything else, the failure's error included, is in the log file."""
    noise = ["python stdout noise", "python stderr noise", "child stdout noise", "child stderr noise"]

    @asset
    def noisy(context):
        print(noise[0])
        print(noise[1], file=sys.stderr)
        child = f"import sys; print({noise[2]!r}); print({noise[3]!r}, file=sys.stderr)"
        subprocess.run([sys.executable, "-c", child], check=True)
        context.log.info("dagster log noise")

    @asset(deps=[noisy])
    def quiet():
        return 1

    @asset(deps=[quiet])
    def broken():
        raise ValueError("broken on purpose")

    job = Definitions(
        assets=[noisy, quiet, broken], jobs=[define_asset_job("small", selection=AssetSelection.all())]
    ).resolve_job_def("small")
    log = tmp_path / "demo.log"
    capfd.readouterr()
    result = execute_with_progress(job, dagster_instance, {}, log)
    out, err = capfd.readouterr()
    assert not result.success
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["[1/3]", "noisy"],
        ["[2/3]", "quiet"],
        ["[3/3]", "broken"],
    ]
    assert out.splitlines()[2].endswith("FAILED")
    logged = log.read_text()
    # Not `err == ""`: the suite's Spark JVM, in this process, may warn on stderr at any moment.
    for text in [*noise, "dagster log noise", "broken on purpose"]:
        assert text in logged and text not in out and text not in err, text


@pytest.mark.slow
def test_the_demo_summary_of_a_whole_run(lake_daily_run, monkeypatch):
    """What `cdp demo` prints after the run, on the whole job's output: a fixed set of lines plus one
    per segment in the segment and audience lists, nothing else."""
    monkeypatch.setenv("CDP_POSTGRES_URL", lake_daily_run["warehouse"].dsn())  # where segment_lines reads
    result, lake = lake_daily_run["result"], lake_daily_run["lake"]
    last = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    log = Path(".cdp/logs/demo-test.log")
    outcome = {"run_id": result.run_id, "success": True, "last": last, "lake": lake, "log": log}
    lines = describe(outcome).splitlines()
    with lake_daily_run["warehouse"].connect() as conn:
        (segments,) = conn.execute(
            f"SELECT count(DISTINCT segment) FROM {MEMBERSHIP} WHERE as_of_date = %s", (last,)
        ).fetchone()
    assert lines[0] == f"run {result.run_id}: succeeded (full log: {log})"
    assert len(lines) == 10 + 2 * (1 + segments)
    assert lines[4].startswith("identity:") and lines[5].lstrip().startswith("pair precision")
