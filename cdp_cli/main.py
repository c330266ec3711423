"""`cdp` console command: generate | demo | backfill | dev | drops | dlq | webhooks … | privacy … | schemas … | sources … | identity | dbt docs | postgres … | tenants … | api serve|keys … | spark-server … | jars fetch|list."""

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from cdp_api.cli import add_commands as add_api_commands
from cdp_cli.privacy import add_commands as add_privacy_commands
from cdp_cli.schemas import add_commands as add_schema_commands
from cdp_cli.sources import add_commands as add_source_commands
from cdp_ingest.webhooks.cli import add_commands as add_webhook_commands
from cdp_resources.names import InvalidName, checked_name
from cdp_resources.postgres_server import EmbeddedPostgres, PostgresServerError, find_bindir
from cdp_resources.settings import PROJECT_DIR, default_lake_uri
from cdp_resources.warehouse_security import TenantAccessError
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.generator import GeneratorConfig
from partitions import late_days, start_date

JOB_NAME = "lake_daily"


def _name(kind: str):
    """An argparse type: the name when it follows the name rule, else argparse's usage error."""

    def check(value: str) -> str:
        try:
            return checked_name(kind, value)
        except InvalidName as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return check


def _tenant_list(value: str) -> tuple[str, ...]:
    check = _name("tenant")
    return tuple(check(tenant) for tenant in value.split(","))


def _generate(args) -> int:
    from cdp_sampledata.generator import generate

    config = GeneratorConfig(
        tenants=args.tenants,
        days=args.days,
        customers=args.customers,
        seed=args.seed,
        start=date.fromisoformat(args.start),
        late_days=late_days(),
        rates=DirtRates(),
    )
    lake = _lake_from(args.lake)
    summary = generate(lake, config, workers=args.workers)
    rate = summary.total_records / summary.seconds
    print(
        f"{summary.total_records:,} records in {summary.files:,} files, {summary.seconds:.1f}s ({rate:,.0f} records/s)"
    )
    for kind, count in sorted(summary.dirt.items()):
        print(f"  dirt {kind}: {count:,}")
    return 0


def _demo(args) -> int:
    from cdp_cli.demo import default_demo_config, demo_log_path, describe, output_to, run_demo
    from cdp_cli.environment import prepare_dagster_environment
    from cdp_resources.dbt_project import dbt_project, prepare

    prepare_dagster_environment()
    prepare(dbt_project)  # the definitions load in this process, not under `dagster dev`
    log_path = demo_log_path()
    outcome = run_demo(default_demo_config(date.fromisoformat(start_date())), args.workers, log_path)
    with output_to(log_path):  # the summary's Spark and PostgreSQL reads log too
        summary = describe(outcome)
    print(summary)
    return 0 if outcome["success"] else 1


def _backfill(args) -> int:
    import time

    from dagster import DagsterInstance

    from cdp_cli.backfill import BackfillRangeError, check_range, run_backfill, summary
    from cdp_cli.environment import prepare_dagster_environment

    first, last = date.fromisoformat(args.from_day), date.fromisoformat(args.to_day)
    try:
        check_range(first, last)
    except BackfillRangeError as error:
        print(f"cdp backfill: {error}", file=sys.stderr)
        return 2
    prepare_dagster_environment()
    with DagsterInstance.get() as instance:
        print(f"backfilling {JOB_NAME} for {first} … {last} in one run (progress every {args.every:g}s)", flush=True)
        started = time.monotonic()
        result = run_backfill(first, last, instance, every=args.every)
        print(summary(result, first, last, time.monotonic() - started, instance))
    return 0 if result.success else 1


def _dev(args) -> int:
    from cdp_cli.environment import prepare_dagster_environment

    prepare_dagster_environment()
    if args.spark_server:
        from cdp_resources.spark_server import SparkConnectServer

        os.environ["CDP_SPARK_MASTER"] = SparkConnectServer.default().start().url()
        print(
            f"runs use the Spark Connect server at {os.environ['CDP_SPARK_MASTER']} (`cdp spark-server stop` stops it)"
        )
    # The virtualenv's dagster, and its dbt for dagster-dbt, which prepares the dbt manifest under
    # `dagster dev` with the `dbt` on PATH: `make dev` runs `.venv/bin/cdp` with the virtualenv not on PATH.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    from cdp_cli.dagster_ui import record_webserver

    record_webserver(args.host, args.port)  # for `cdp schemas import`, which reloads the code location
    command = [
        os.path.join(os.path.dirname(sys.executable), "dagster"),
        "dev",
        "-w",
        str(PROJECT_DIR / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    os.execv(command[0], command)


def _postgres(args) -> int:
    server = EmbeddedPostgres.default()
    if args.action == "bindir":
        print(find_bindir())
    elif args.action == "start":
        print(server.start().url())
    elif args.action == "stop":
        server.stop()
    elif args.action == "url":
        print(server.url() if server.initialised() else "not initialised")
    else:
        print("running" if server.running() else "stopped")
    return 0


def _admin_url(args) -> str:
    """A role that may create roles: `--url`, `CDP_POSTGRES_ADMIN_URL`, else the embedded superuser."""
    return args.url or os.environ.get("CDP_POSTGRES_ADMIN_URL") or EmbeddedPostgres.default().start().url("cdp")


def _tenants(args) -> int:
    import psycopg

    from cdp_resources import warehouse_security as security

    with psycopg.connect(_admin_url(args), autocommit=True) as admin:
        if args.action == "list":
            for tenant, role, pii in security.list_tenants(admin):
                print(f"{tenant}\t{role}\t{'pii' if pii else 'masked'}")
            return 0
        if args.action == "add":
            security.ensure_roles(admin)
            security.ensure_security_as_owner(admin)
            role, password = security.add_tenant(
                admin, args.tenant, os.environ.get("CDP_TENANT_PASSWORD"), pii=args.pii
            )
            print(f"role {role} for tenant {args.tenant} ({'with' if args.pii else 'without'} personal columns)")
            if not os.environ.get("CDP_TENANT_PASSWORD"):
                print(f"password (shown once): {password}")
            return 0
        if not args.pii:
            raise security.TenantAccessError(f"`cdp tenants {args.action}` takes --pii (the one grant there is)")
        role = security.set_pii(admin, args.tenant, args.action == "grant")
        print(f"{role}: personal columns of {args.tenant} {'visible' if args.action == 'grant' else 'masked'}")
    return 0


def _spark_server(args) -> int:
    from cdp_resources.spark_server import SparkConnectServer

    server = SparkConnectServer.default()
    if args.action == "start":
        print(server.start().url())  # for CDP_SPARK_MASTER
    elif args.action == "stop":
        server.stop()
    elif args.action == "url":
        print(server.url() if server.running() else "not running")
    else:
        print("running" if server.running() else "stopped")
    return 0


def _lake_from(uri: str | None):
    from cdp_resources.lake import LakeResource

    return LakeResource(
        base_uri=uri or os.environ.get("CDP_LAKE_URI") or default_lake_uri(),
        s3_endpoint_url=os.environ.get("CDP_S3_ENDPOINT_URL"),
    )


def _drop_root(location: str | None, lake):
    """The location holding `drops/`: the lake by default. A location that is the `drops` folder
    itself (and holds no `drops/` of its own) stands for the folder above it."""
    if not location:
        return lake
    root = _lake_from(location)
    trimmed = location.rstrip("/")
    if trimmed.rsplit("/", 1)[-1] != "drops" or root.list("drops/"):
        return root
    if "://" in trimmed:  # s3://bucket/…/drops; a bucket named drops has nothing above it
        return _lake_from(trimmed.rsplit("/", 1)[0]) if "/" in trimmed.split("://", 1)[1] else root
    return _lake_from(str(Path(trimmed).resolve().parent))


def _drops(args) -> int:
    from cdp_ingest.file_drops import process_drops
    from cdp_ingest.registry import SchemaRegistry

    lake = _lake_from(args.lake)
    root = _drop_root(args.drops, lake)
    outcomes = process_drops(root, lake, SchemaRegistry.configured())
    for outcome in outcomes:
        note = f" ({outcome.error})" if outcome.error else ""
        print(
            f"{outcome.key}: {outcome.records} records, {outcome.landed} landed, "
            f"{outcome.dead_lettered} dead-lettered, {outcome.suppressed} suppressed{note}"
        )
    print(
        f"{len(outcomes)} drop files processed from {root.spark_path('drops/')} "
        "(files go under drops/{tenant}/{provider}/{stream}/; processed ones are skipped)"
    )
    return 0


def _dlq(args) -> int:
    from cdp_ingest.registry import SchemaRegistry
    from cdp_ingest.reprocess import reprocess

    outcome = reprocess(
        _lake_from(args.lake), SchemaRegistry.configured(), args.tenant, args.provider, args.error_type, args.stream
    )
    print(
        f"{outcome.resubmitted} dead letters resubmitted: {sum(outcome.landed.values())} landed "
        f"{dict(outcome.landed)}, {sum(outcome.still_failing.values())} still failing {dict(outcome.still_failing)}, "
        f"{sum(outcome.suppressed.values())} suppressed (forgotten people)"
    )
    return 0


def _identity(args) -> int:
    from cdp_cli.demo import accuracy_lines

    print("\n".join(accuracy_lines(_lake_from(args.lake))))
    return 0


def _dbt_docs(args) -> int:
    from cdp_resources.dbt_project import DBT_EXECUTABLE, dbt_cli, dbt_project, docs_path
    from cdp_resources.warehouse import WarehouseResource

    os.environ.update(WarehouseResource().dbt_env())
    target = docs_path(dbt_project)
    if args.regenerate or not (target / "index.html").exists():
        dbt_cli(dbt_project).cli(["docs", "generate"], target_path=target).wait()
    print(f"dbt docs on http://{args.host}:{args.port} (Ctrl-C stops)")
    os.execv(
        DBT_EXECUTABLE,
        [
            DBT_EXECUTABLE,
            "docs",
            "serve",
            "--project-dir",
            str(dbt_project.project_dir),
            "--profiles-dir",
            str(dbt_project.profiles_dir),
            "--target-path",
            str(target),
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--no-browser",
        ],
    )


def _jars(args) -> int:
    from cdp_resources.spark_jars import (
        ensure_functions_jar,
        ensure_jars,
        ensure_local_fs_jar,
        ensure_parquet_writers_jar,
    )

    jars = ensure_jars()
    jars.append(ensure_functions_jar(jars))
    ensure_local_fs_jar()  # on the JVM's own classpath in local mode, not a session jar
    ensure_parquet_writers_jar()  # likewise
    print("\n".join(jars) if args.action == "list" else f"{len(jars)} jars cached")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cdp", description="Customer Data Platform on Dagster")
    commands = root.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write deterministic sample data with dirt and ground truth")
    gen.add_argument("--tenants", type=_tenant_list, default="acme_corp,globex", help="comma-separated tenant ids")
    gen.add_argument("--days", type=int, default=7)
    gen.add_argument("--customers", type=int, default=2_000, help="people per tenant")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--start", default=start_date(), help="first day (YYYY-MM-DD)")
    gen.add_argument("--lake", help="lake root (default: CDP_LAKE_URI or .cdp/lake)")
    gen.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    gen.set_defaults(handler=_generate)

    demo = commands.add_parser("demo", help="generate sample data and materialise every partition")
    demo.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    demo.set_defaults(handler=_demo)

    backfill = commands.add_parser(
        "backfill", help=f"onboard history: materialise {JOB_NAME} over a range of days in one run, with progress"
    )
    backfill.add_argument("--from", dest="from_day", required=True, help="first day (YYYY-MM-DD), >= CDP_START_DATE")
    backfill.add_argument("--to", dest="to_day", required=True, help="last day (YYYY-MM-DD), inclusive")
    backfill.add_argument("--every", type=float, default=10.0, help="seconds between progress lines (0: none)")
    backfill.set_defaults(handler=_backfill)

    dev = commands.add_parser("dev", help="start the Dagster UI on the embedded defaults")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument(
        "--spark-server",
        action="store_true",
        help="runs share one warm Spark JVM (`cdp spark-server`, started if needed) instead of starting one each",
    )
    dev.set_defaults(handler=_dev)

    drops = commands.add_parser("drops", help="convert pending file drops (CSV, JSON-lines, Parquet) into raw files")
    drops.add_argument("action", choices=["process"])
    drops.add_argument("--drops", help="drop location (directory or s3://…); default: the lake")
    drops.add_argument("--lake")
    drops.set_defaults(handler=_drops)

    dlq = commands.add_parser("dlq", help="resubmit dead letters through validation")
    dlq.add_argument("action", choices=["reprocess"])
    dlq.add_argument("--tenant", type=_name("tenant"), required=True)
    dlq.add_argument("--provider", type=_name("provider"), required=True)
    dlq.add_argument("--error-type", type=_name("rule"), help="only this rule (e.g. schema_violation)")
    dlq.add_argument("--stream", type=_name("stream"))
    dlq.add_argument("--lake")
    dlq.set_defaults(handler=_dlq)

    dbt = commands.add_parser("dbt", help="dbt's documentation site: generate (if needed) and serve it")
    dbt.add_argument("action", choices=["docs"])
    dbt.add_argument("--host", default="127.0.0.1")
    dbt.add_argument("--port", type=int, default=8080)
    dbt.add_argument("--regenerate", action="store_true", help="run `dbt docs generate` even when docs exist")
    dbt.set_defaults(handler=_dbt_docs)

    add_webhook_commands(commands)
    add_schema_commands(commands)
    add_source_commands(commands)
    add_api_commands(commands)
    add_privacy_commands(commands, _name("tenant"))

    pg = commands.add_parser("postgres", help="the embedded PostgreSQL under .cdp/postgres")
    pg.add_argument("action", choices=["start", "stop", "status", "url", "bindir"])
    pg.set_defaults(handler=_postgres)

    tenants = commands.add_parser(
        "tenants",
        help="tenants' analyst roles in the warehouse: add (a login role that sees only its tenant), list, "
        "grant/revoke --pii (its personal columns unmasked)",
    )
    tenants.add_argument("action", choices=["add", "list", "grant", "revoke"])
    tenants.add_argument("tenant", nargs="?", help="tenant id (add, grant, revoke)")
    tenants.add_argument("--pii", action="store_true", help="personal columns (email, phone, names, address)")
    tenants.add_argument("--url", help="a role that may create roles (default: CDP_POSTGRES_ADMIN_URL or embedded)")
    tenants.set_defaults(handler=_tenants)

    spark_server = commands.add_parser(
        "spark-server",
        help="a long-lived Spark Connect server under .cdp/spark-server: "
        "runs reach it with CDP_SPARK_MASTER=<its url> instead of starting a Spark JVM each",
    )
    spark_server.add_argument("action", choices=["start", "stop", "status", "url"])
    spark_server.set_defaults(handler=_spark_server)

    identity = commands.add_parser("identity", help="identity resolution against the sample data's ground truth")
    identity.add_argument("action", choices=["accuracy"], help="pair precision and recall of the identity map")
    identity.add_argument("--lake", help="lake URI (default: CDP_LAKE_URI or .cdp/lake)")
    identity.set_defaults(handler=_identity)

    jars = commands.add_parser(
        "jars",
        help="Spark's jars (Delta, libphonenumber, the project's JVM functions): fetch or build them (list: their paths)",
    )
    jars.add_argument("action", choices=["fetch", "list"])
    jars.set_defaults(handler=_jars)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (PostgresServerError, TenantAccessError) as error:
        print(f"cdp: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
