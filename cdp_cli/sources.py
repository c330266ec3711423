"""`cdp sources list | status | run`: the declared sources (`CDP_SOURCES_FILE`) from a shell.

`status` reads each source's bookmark and pause from the platform's PostgreSQL (`CDP_POSTGRES_URL`
or the embedded one); `run` runs one source as its Dagster asset would (same lock, bookmark,
timeout, retries and pause), outside Dagster: no materialisation is recorded, the raw-file sensor
still picks up its files.
"""

import json
import os
import sys

from cdp_resources.lake import LakeResource
from cdp_resources.settings import default_lake_uri
from cdp_resources.warehouse import WarehouseResource
from cdp_sources.declarations import SecretReferenceError, SourcesFileError, load_sources
from cdp_sources.runner import SourceRunError, run_source
from cdp_sources.state import SourceBusy, read_status
from cdp_sources.taps import TapInstallError


def _dsn(args) -> str:
    return WarehouseResource(url=args.postgres_url or os.environ.get("CDP_POSTGRES_URL")).dsn()


def _list(args) -> int:
    for source in load_sources():
        streams = ", ".join(f"{tap} → {mapping.to}" for tap, mapping in source.streams.items())
        print(f"{source.key}\t{source.tap}\t{source.schedule or 'by hand'}\t{streams}")
    return 0


def _status(args) -> int:
    dsn = _dsn(args)
    for source in load_sources():
        bookmark, updated_at, pause = read_status(dsn, source.tenant, source.name)
        state = f"paused: {pause.reason}" if pause else "active"
        reached = (
            f"bookmark of {updated_at:%Y-%m-%d %H:%M:%S %Z}: {json.dumps(bookmark)}" if bookmark else "no bookmark"
        )
        print(f"{source.key}\t{state}\t{reached}")
    return 0


def _run(args) -> int:
    sources = {source.key: source for source in load_sources()}
    if args.source not in sources:
        print(
            f"cdp sources run: no source {args.source or '(none given)'} (declared: {', '.join(sorted(sources))})",
            file=sys.stderr,
        )
        return 1
    lake = LakeResource(
        base_uri=args.lake or os.environ.get("CDP_LAKE_URI") or default_lake_uri(),
        s3_endpoint_url=os.environ.get("CDP_S3_ENDPOINT_URL"),
    )
    try:
        report = run_source(sources[args.source], lake, _dsn(args))
    except (SourceRunError, TapInstallError, SecretReferenceError, SourceBusy) as error:
        print(f"cdp sources run: {error}", file=sys.stderr)
        return 1
    landed = ", ".join(f"{stream} {count}" for stream, count in sorted(report.landed.items())) or "nothing"
    print(
        f"{args.source}: landed {landed} in {report.files} files; {sum(report.dead_letters.values())} dead letters; "
        f"{report.duration_seconds:.1f}s"
    )
    return 0


def _guarded(handler):
    def run(args) -> int:
        try:
            return handler(args)
        except SourcesFileError as error:
            print(f"cdp sources: {error}", file=sys.stderr)
            return 1

    return run


def add_commands(commands) -> None:
    sources = commands.add_parser("sources", help="the declared sources: list, status (bookmark, pause), run one")
    sources.add_argument("action", choices=["list", "status", "run"])
    sources.add_argument("source", nargs="?", help="TENANT/SOURCE (run)")
    sources.add_argument("--lake", help="lake URI (default: CDP_LAKE_URI or .cdp/lake)")
    sources.add_argument("--postgres-url", help="the platform's PostgreSQL (default: CDP_POSTGRES_URL or embedded)")
    sources.set_defaults(
        handler=_guarded(lambda args: {"list": _list, "status": _status, "run": _run}[args.action](args))
    )
