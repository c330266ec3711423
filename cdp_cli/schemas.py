"""`cdp schemas import | list`: register a tap's streams in the schema registry, list what it holds.

`import` takes a catalog (a tap's `--discover` output, a file or `-`) or a declared source
(`--source tenant/source`: its tap discovers with its config; its streams' registry names and
replication keys are used). Every stream is checked before any is written: the registry's
compatibility rules against its latest version (a breaking change is refused naming the field)
and the generic curated table it will get. A stream whose schema is unchanged keeps its version.
Fields that look personal are marked `x-cdp-pii` and listed for review (`--pii`/`--no-pii`
decide). After a registration, a running `cdp dev` reloads its code location, so the UI shows the
new assets (`cdp_cli/dagster_ui.py`).
"""

import json
import sys
from pathlib import Path

from cdp_ingest.catalog_import import CatalogImportError, ImportedStream, import_catalog
from cdp_ingest.registry import (
    SCHEMA_DIR,
    BreakingSchemaChange,
    RegisteredSchema,
    SchemaRegistry,
    registered_schema_dir,
)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, field = value.partition("=")
        if not sep or not name or not field:
            raise CatalogImportError(f"{what} takes NAME=VALUE, not {value!r}")
        pairs[name] = field
    return pairs


def _fields(values: list[str], what: str) -> dict[str, list[str]]:
    return {name: fields.split(",") for name, fields in _pairs(values, what).items()}


def _catalog_streams(args, registry: SchemaRegistry) -> tuple[str, list[ImportedStream]]:
    """(provider, the imported streams) from the catalog or the declared source of `args`."""
    keys = _fields(args.key, "--key")
    event_times = _pairs(args.event_time, "--event-time")
    personal = {"pii": _fields(args.pii, "--pii"), "no_pii": _fields(args.no_pii, "--no-pii")}

    def previous(provider: str):
        return lambda name: registry.latest(provider, name).schema if registry.knows(provider, name) else None

    if args.source:
        from cdp_sources.declarations import load_sources
        from cdp_sources.runner import discover_catalog

        sources = {source.key: source for source in load_sources()}
        if args.source not in sources:
            raise CatalogImportError(
                f"no source {args.source} in the sources file (it has {', '.join(sorted(sources))})"
            )
        source = sources[args.source]
        streams = {tap_id: mapping.stream for tap_id, mapping in source.streams.items()}
        for mapping in source.streams.values():
            if mapping.replication_key:
                event_times.setdefault(mapping.stream, mapping.replication_key)
        catalog = discover_catalog(source)
        return source.provider, import_catalog(
            catalog, source.provider, streams, event_times, keys, **personal, previous=previous(source.provider)
        )
    if not args.provider:
        raise CatalogImportError("a catalog needs --provider (the registry provider its streams go under)")
    text = sys.stdin.read() if args.catalog == "-" else Path(args.catalog).read_text()
    try:
        catalog = json.loads(text)
    except ValueError as error:
        raise CatalogImportError(f"{args.catalog}: not a JSON catalog ({error})") from None
    streams = {tap_id: name or None for tap_id, _, name in (value.partition("=") for value in args.stream)} or None
    return args.provider, import_catalog(
        catalog, args.provider, streams, event_times, keys, **personal, previous=previous(args.provider)
    )


def _import(args) -> int:
    from cdp_transform.generic import GenericTableError, generic_entity

    registry = SchemaRegistry(SCHEMA_DIR, Path(args.schema_dir) if args.schema_dir else registered_schema_dir())
    try:
        provider, imported = _catalog_streams(args, registry)
        changed = []
        for stream in imported:
            if registry.knows(provider, stream.stream):
                latest = registry.latest(provider, stream.stream)
                if latest.schema == stream.schema:
                    print(f"{provider}/{stream.stream}: unchanged (v{latest.version})")
                    continue
                registry.check_compatible(provider, stream.stream, stream.schema)
                version = latest.version + 1
            else:
                version = 1
            generic_entity(RegisteredSchema(provider, stream.stream, version, stream.schema))
            changed.append(stream)
    except (CatalogImportError, BreakingSchemaChange, GenericTableError) as error:
        print(f"cdp schemas import: refused, nothing registered: {error}", file=sys.stderr)
        return 1
    for stream in changed:
        registered = registry.register(provider, stream.stream, stream.schema)
        print(
            f"{provider}/{stream.stream}: registered v{registered.version} from {stream.tap_stream_id} "
            f"(key {', '.join(registered.key)}; event time {registered.event_time_field}) in {registry.registered}"
        )
        if stream.pii:
            # Names only, never values: the user reviews what the warehouse will mask.
            print(
                f"  personal data (x-cdp-pii, masked for tenant roles without the PII grant): {', '.join(stream.pii)}"
                + (f"; proposed by name: {', '.join(stream.proposed_pii)}" if stream.proposed_pii else "")
                + f"; change with --no-pii {stream.stream}=FIELD or --pii {stream.stream}=FIELD"
            )
    if changed:
        from cdp_cli.dagster_ui import reload_code_location

        print(reload_code_location())
    return 0


def _list(args) -> int:
    registry = SchemaRegistry.configured()
    for provider, stream in registry.streams():
        latest = registry.latest(provider, stream)
        print(
            f"{provider}/{stream}\tv{latest.version}\tkey {', '.join(latest.key)}\tevent time {latest.event_time_field}"
        )
    return 0


def add_commands(commands) -> None:
    schemas = commands.add_parser("schemas", help="the schema registry: import a tap's catalog, list the streams")
    actions = schemas.add_subparsers(dest="action", required=True)
    imports = actions.add_parser(
        "import", help="register the streams of a tap's catalog (--discover output) or of a declared source"
    )
    imports.add_argument("catalog", nargs="?", default="-", help="the catalog file (default: stdin)")
    imports.add_argument("--provider", help="registry provider of the streams (with a catalog)")
    imports.add_argument("--source", help="TENANT/SOURCE of the sources file: its tap discovers the catalog")
    imports.add_argument(
        "--stream", action="append", default=[], metavar="TAP_STREAM=NAME", help="import only these (under NAME)"
    )
    imports.add_argument(
        "--event-time", action="append", default=[], metavar="NAME=FIELD", help="the field that dates a record"
    )
    imports.add_argument(
        "--key", action="append", default=[], metavar="NAME=F1,F2", help="the key, if the tap has none"
    )
    imports.add_argument(
        "--pii", action="append", default=[], metavar="NAME=F1,F2", help="these fields are personal data (x-cdp-pii)"
    )
    imports.add_argument(
        "--no-pii", action="append", default=[], metavar="NAME=F1,F2", help="these fields are not personal data"
    )
    imports.add_argument("--schema-dir", help="where to register (default: CDP_SCHEMA_DIR or .cdp/schemas)")
    imports.set_defaults(handler=_import)
    listing = actions.add_parser("list", help="every registered stream: latest version, key, event time")
    listing.set_defaults(handler=_list)
