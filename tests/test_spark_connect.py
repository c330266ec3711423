"""The same code over Spark Connect (`CDP_SPARK_MASTER=sc://…`, on the project's own server,
`cdp_resources/spark_server.py`) gives the same tables as local mode: raw, curated (with dead
letters), identity and profiles (SQL MERGE) in one historic run."""

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from cdp_resources.lake_paths import EDGES, HISTORY, MAP, NODES, PROFILES, dead_letter_path
from cdp_resources.local_ports import free_port, port_in_use
from cdp_resources.settings import PROJECT_DIR
from cdp_resources.spark_server import SERVER_CLASS, SparkConnectServer, SparkServerError
from cdp_transform.entities import ENTITIES
from tests.conftest import IDENTITY_GROUPS, LAKE_DAILY_CONFIG, assert_same_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    server = SparkConnectServer(
        tmp_path_factory.mktemp("spark-server"), overrides={"spark.driver.memory": "2g"}
    ).start()
    yield server
    server.stop()
    assert not server.running()


def test_spark_connect_server_gives_the_tables_local_mode_gives(spark, tmp_path, connect_server, lake_daily_run):
    local = lake_daily_run["lake"]  # the whole job's run in local mode
    for zone in ("raw", "reference"):  # the tenants' inputs: raw files and company references
        shutil.copytree(os.path.join(local.base_uri, zone), tmp_path / "lake" / zone)
    first, last = LAKE_DAILY_CONFIG.start, LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    env = {**os.environ, "CDP_SPARK_MASTER": connect_server.url()}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.cluster_job",
            str(tmp_path / "lake"),
            first.isoformat(),
            last.isoformat(),
            "raw",
            "curated",
            *IDENTITY_GROUPS,
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "spark session: pyspark.sql.connect.session" in run.stdout

    tables = [f"curated/{spec.table}" for spec in ENTITIES if local.is_delta_table(f"curated/{spec.table}")]
    tables += [dead_letter_path(spec.table) for spec in ENTITIES if local.is_delta_table(dead_letter_path(spec.table))]
    for key in [*tables, NODES, EDGES, MAP, PROFILES, HISTORY]:
        assert_same_rows(
            *(spark.read.format("delta").load(f"{root}/{key}") for root in (local.base_uri, tmp_path / "lake")), key
        )
    assert (
        spark.read.format("delta").load(f"{tmp_path}/lake/curated/shopify_customers").where("phone LIKE '+%'").count()
        > 0
    )


def test_spark_connect_server_is_reused_and_comes_back_at_its_url(connect_server):
    again = SparkConnectServer(connect_server.home).start()
    assert (again.url(), again.pid()) == (connect_server.url(), connect_server.pid()) and again.running()
    url, pid = connect_server.url(), connect_server.pid()
    connect_server.stop()
    assert not connect_server.running()
    assert connect_server.start().url() == url and connect_server.pid() != pid and connect_server.running()


def test_a_stale_pid_file_names_no_server(tmp_path):
    """After a reboot the pid in the file may be another process's: it is neither running nor stopped."""
    server = SparkConnectServer(tmp_path / "stale")
    server.home.mkdir()
    (server.home / "pid").write_text(str(os.getpid()))  # this pytest process
    (server.home / "port").write_text("1")
    assert not server.running()
    server.stop()  # must not signal this process's group
    assert server.pid() is None


# A process in the state of a JVM hung in its shutdown: on SIGTERM its main thread ends (Linux's
# `exit` of one thread, so the leader is defunct and its /proc cmdline empty), and another thread
# keeps listening. Its command line names the server's class, as the JVM's does.
HUNG_IN_SHUTDOWN = """import ctypes, platform, signal, socket, sys, threading, time
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
SYS_EXIT = {"x86_64": 60, "aarch64": 93}[platform.machine()]  # this thread only, unlike exit_group
signal.signal(signal.SIGTERM, lambda *_: ctypes.CDLL(None).syscall(SYS_EXIT, 0))
threading.Thread(target=time.sleep, args=(600,)).start()
time.sleep(600)
"""


def test_stop_kills_a_server_that_hangs_in_its_shutdown_holding_its_port(tmp_path):
    server = SparkConnectServer(tmp_path / "hung")
    server.home.mkdir()
    port = free_port()
    hung = subprocess.Popen([sys.executable, "-c", HUNG_IN_SHUTDOWN, str(port), SERVER_CLASS], start_new_session=True)
    try:
        while not port_in_use(port):
            assert hung.poll() is None
            time.sleep(0.1)
        (server.home / "pid").write_text(str(hung.pid))
        (server.home / "port").write_text(str(port))
        assert server.running()
        server.stop(timeout=2)
        assert not port_in_use(port) and hung.wait(10) == -signal.SIGKILL and server.pid() is None
    finally:
        if hung.poll() is None:
            os.killpg(hung.pid, signal.SIGKILL)
            hung.wait()


def test_a_server_that_cannot_start_says_why(tmp_path):
    server = SparkConnectServer(tmp_path / "bad", overrides={"spark.driver.memory": "not-a-size"})
    with pytest.raises(SparkServerError, match="exited"):
        server.start(timeout=120)
    assert not server.running()
