"""The embedded PostgreSQL: a cluster the project runs itself under `.cdp/postgres`.

Used when `CDP_POSTGRES_URL` is unset. It listens on 127.0.0.1 only, on a free port chosen at
`initdb` time (and re-chosen if that port is later taken), with no Unix socket. Starting is
idempotent: a running cluster is reused. As root, the cluster runs as the `postgres` OS user,
because PostgreSQL refuses to run as root. It holds two databases: `dagster` (instance storage,
with `synchronous_commit = off`) and `cdp` (the warehouse, owned by the pipeline's role `cdp_pipeline`).

The platform's own roles (the superuser `cdp`, the pipeline's `cdp_pipeline`) are trusted from
127.0.0.1; every other role (tenants' analysts) logs in with its password (docs/security.md).
"""

import glob
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cdp_resources.local_ports import free_port, port_in_use
from cdp_resources.settings import state_dir
from cdp_resources.warehouse_security import PIPELINE_ROLE, ensure_roles

DAGSTER_DATABASE = "dagster"
DATABASES = (DAGSTER_DATABASE, "cdp")
SUPERUSER = "cdp"
WAREHOUSE_DATABASE = "cdp"
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "shared_buffers": "'128MB'",
    "logging_collector": "off",
}


class PostgresServerError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres (newest installed major version)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.insert(0, str(Path(on_path).resolve().parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresServerError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make setup` or install the OS package 'postgresql'"
    )


def _postgres_user_can_reach(path: Path) -> bool:
    """As root: can the `postgres` OS user enter every directory above `path`?"""
    return (
        subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)], capture_output=True).returncode
        == 0
    )


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `root/data`, its log in `root/postgres.log`.

    As root, when the `postgres` user cannot enter the project directory (a checkout under
    /root, say), the data directory and log live in /var/lib/postgresql/cdp/<hash of root>,
    linked from `root/cluster`.
    """

    root: Path

    @classmethod
    def default(cls) -> "EmbeddedPostgres":
        return cls(state_dir() / "postgres")

    @property
    def cluster_dir(self) -> Path:
        link = self.root / "cluster"
        return link.resolve() if link.is_symlink() else self.root

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or _postgres_user_can_reach(self.root.parent):
            return
        outside = Path("/var/lib/postgresql/cdp") / hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        outside.mkdir(parents=True, exist_ok=True)
        shutil.chown(outside, "postgres", "postgres")
        if not (self.root / "cluster").is_symlink():
            (self.root / "cluster").symlink_to(outside)

    @property
    def log_file(self) -> Path:
        return self.cluster_dir / "postgres.log"

    @property
    def port(self) -> int:
        return int((self.root / "port").read_text())

    def url(self, database: str = "cdp", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _write_hba(self) -> bool:
        """Trust the platform's roles from 127.0.0.1, passwords for everyone else; True when changed."""
        hba = self.data_dir / "pg_hba.conf"
        wanted = "".join(
            [
                "# CDP embedded server: the platform's own roles are trusted locally, analysts need a password\n",
                *(f"host all {role} 127.0.0.1/32 trust\n" for role in (SUPERUSER, PIPELINE_ROLE)),
                "host all all 127.0.0.1/32 scram-sha-256\n",
            ]
        )
        if hba.read_text() == wanted:
            return False
        hba.write_text(wanted)
        return True

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(find_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if check and result.returncode != 0:
            raise PostgresServerError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")
        return result

    def _hand_to_postgres_user(self) -> None:
        if os.geteuid() == 0:
            for top in {self.root, self.cluster_dir}:
                for path in (top, *top.rglob("*")):
                    if not path.is_symlink():
                        shutil.chown(path, "postgres", "postgres")

    def _write_port(self, port: int) -> None:
        (self.root / "port").write_text(str(port))
        auto_conf = self.data_dir / "postgresql.auto.conf"
        kept = [line for line in auto_conf.read_text().splitlines() if not line.startswith("port =")]
        auto_conf.write_text("\n".join([*kept, f"port = {port}"]) + "\n")

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_root()
        self._hand_to_postgres_user()
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# CDP embedded server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in _SERVER_SETTINGS.items())
        self._write_port(free_port())

    def running(self) -> bool:
        return (
            self.initialised() and self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0
        )

    def start(self) -> "EmbeddedPostgres":
        """Start the cluster (initialising it first if needed); reuse it when it is already running."""
        if not self.initialised():
            self.init()
        hba_changed = self._write_hba()
        if self.running():
            if hba_changed:
                self._run("pg_ctl", "reload", "-D", str(self.data_dir))
        else:
            if port_in_use(self.port):
                self._write_port(free_port())
            self.log_file.touch()
            self._hand_to_postgres_user()
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file))
        self._create_databases()
        return self

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def _create_databases(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            ensure_roles(conn)
            existing = dict(conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database").fetchall())
            for database in DATABASES:
                if database not in existing:
                    owner = PIPELINE_ROLE if database == WAREHOUSE_DATABASE else SUPERUSER
                    conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
            # Dagster's own bookkeeping commits one event at a time; without waiting for each WAL
            # flush a server crash can lose the last moments of run events, never corrupt them.
            # The warehouse (`cdp`) keeps full durability.
            conn.execute(f'ALTER DATABASE "{DAGSTER_DATABASE}" SET synchronous_commit = off')
            if existing.get(WAREHOUSE_DATABASE) == SUPERUSER:
                self._hand_warehouse_to_pipeline()

    def _hand_warehouse_to_pipeline(self) -> None:
        """A cluster made before the pipeline had a role of its own: the warehouse database, its
        schemas and their relations pass from the superuser to the pipeline's role."""
        import psycopg
        from psycopg import sql

        kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
        with psycopg.connect(self.url(WAREHOUSE_DATABASE), autocommit=True) as conn, conn.transaction():
            pipeline = sql.Identifier(PIPELINE_ROLE)
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(WAREHOUSE_DATABASE), pipeline))
            schemas = [
                name
                for (name,) in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE pg_get_userbyid(nspowner) = %s "
                    "AND nspname NOT IN ('public', 'information_schema', 'cdp_webhooks') AND nspname NOT LIKE 'pg_%%'",
                    (SUPERUSER,),
                )
            ]
            for schema in schemas:
                conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), pipeline))
            for schema, relation, kind in conn.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ANY(%s) AND c.relkind = ANY(%s)",
                (schemas, list(kinds)),
            ).fetchall():
                conn.execute(
                    sql.SQL("ALTER {} {} OWNER TO {}").format(
                        sql.SQL(kinds[kind]), sql.Identifier(schema, relation), pipeline
                    )
                )


def dagster_storage_url() -> str:
    """Dagster's instance storage: `CDP_DAGSTER_POSTGRES_URL`, else `CDP_POSTGRES_URL`, else the embedded server."""
    explicit = os.environ.get("CDP_DAGSTER_POSTGRES_URL") or os.environ.get("CDP_POSTGRES_URL")
    return explicit or EmbeddedPostgres.default().start().url("dagster")
