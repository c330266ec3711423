"""The embedded PostgreSQL: initdb, idempotent start, reuse, stop, data kept across restarts."""

import socket

import psycopg

from cdp_resources.postgres_server import DATABASES, EmbeddedPostgres, dagster_storage_url
from tests.conftest import TEST_STATE


def test_session_server_has_both_databases(postgres):
    with psycopg.connect(postgres.url("postgres")) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert set(DATABASES) <= names
    with psycopg.connect(postgres.url("cdp")) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"  # the warehouse stays durable
    with psycopg.connect(postgres.url("dagster")) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"  # Dagster's bookkeeping


def test_start_stop_reuse_and_port_change():
    server = EmbeddedPostgres(TEST_STATE / "lifecycle-postgres")
    server.stop()
    try:
        server.start()
        port = server.port
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kept (v int)")
            conn.execute("TRUNCATE kept")
            conn.execute("INSERT INTO kept VALUES (1)")

        assert server.start().port == port  # already running: reused, not restarted
        assert server.running()
        server.stop()
        assert not server.running()

        with socket.socket() as squatter:  # someone else takes the port while we are down
            # like PostgreSQL itself: bind despite the TIME_WAIT our own connection left behind
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            server.start()
            assert server.port != port
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 1
    finally:
        server.stop()
    assert not server.running()


def test_configured_url_starts_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("CDP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CDP_POSTGRES_URL", "postgresql://someone@db.example:5432/warehouse")
    monkeypatch.delenv("CDP_DAGSTER_POSTGRES_URL", raising=False)
    assert dagster_storage_url() == "postgresql://someone@db.example:5432/warehouse"
    monkeypatch.setenv("CDP_DAGSTER_POSTGRES_URL", "postgresql://someone@db.example:5432/dagster")
    assert dagster_storage_url() == "postgresql://someone@db.example:5432/dagster"
    assert not (tmp_path / "state").exists()


def test_warehouse_url_from_the_environment_reaches_runs(warehouse, monkeypatch):
    """CDP_POSTGRES_URL set: the project's warehouse resource connects there inside a run and
    outside one (a bug: runs connected to the literal string "CDP_POSTGRES_URL")."""
    from dagster import EnvVar, asset, materialize

    from cdp_resources.warehouse import WarehouseResource

    monkeypatch.setenv("CDP_POSTGRES_URL", warehouse.url)

    @asset
    def database_name(warehouse: WarehouseResource) -> str:
        with warehouse.connect() as conn:
            return conn.execute("SELECT current_database()").fetchone()[0]

    assert WarehouseResource().dsn() == warehouse.url
    for resource in (
        WarehouseResource(),
        WarehouseResource(url=EnvVar("CDP_POSTGRES_URL")),
    ):  # the latter as definitions.py builds it
        result = materialize([database_name], resources={"warehouse": resource})
        assert result.output_for_node("database_name") == "warehouse"
