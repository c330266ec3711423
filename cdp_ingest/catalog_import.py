"""Registry schemas from a Singer tap's catalog (its `--discover` output), for `cdp schemas import`.

Each catalog stream becomes the registry schema of `{provider}/{name}`: the tap's JSON schema
(`singer_schema.normalised`: draft 4's exclusive bounds rewritten, `multipleOf` dropped), its
`key_properties` (or the metadata's `table-key-properties`) as `x-cdp-key`, and as `x-cdp-event-time` the field chosen for it, else the
replication key the catalog selects, else its only valid replication key. Key and event-time
fields are required. Nothing here writes: `SchemaRegistry.register` does, after its checks.
"""

from dataclasses import dataclass

from cdp_ingest.singer_schema import normalised
from cdp_resources.names import checked_name


class CatalogImportError(ValueError):
    """A catalog stream that cannot become a registry schema; the message names the stream."""


@dataclass(frozen=True)
class ImportedStream:
    tap_stream_id: str
    stream: str  # the registry stream name
    schema: dict


def _stream_metadata(entry: dict) -> dict:
    """The catalog entry's stream-level metadata (breadcrumb [])."""
    for item in entry.get("metadata", []):
        if item.get("breadcrumb") == []:
            return item.get("metadata", {})
    return {}


def _event_time(entry: dict, chosen: str | None, where: str, stream: str) -> str:
    metadata = _stream_metadata(entry)
    valid = metadata.get("valid-replication-keys") or []
    field = chosen or entry.get("replication_key") or metadata.get("replication-key")
    if field is None and len(valid) == 1:
        field = valid[0]
    if field is None:
        raise CatalogImportError(f"{where}: no event-time field; choose one with --event-time {stream}=FIELD")
    if field not in entry["schema"].get("properties", {}):
        raise CatalogImportError(f"{where}: event-time field {field!r} is not in the stream's schema")
    return field


def registry_schema(entry: dict, provider: str, stream: str, event_time: str | None, key: list[str] | None) -> dict:
    """The registry schema of one catalog `entry`, as `{provider}/{stream}`."""
    where = entry.get("tap_stream_id") or entry.get("stream")
    if not isinstance(entry.get("schema"), dict) or not isinstance(entry["schema"].get("properties"), dict):
        raise CatalogImportError(f"{where}: the catalog entry has no JSON schema with properties")
    key = key or entry.get("key_properties") or _stream_metadata(entry).get("table-key-properties") or []
    if not key:
        raise CatalogImportError(f"{where}: the tap names no key (key_properties); give one with --key {stream}=FIELD")
    missing = [name for name in key if name not in entry["schema"]["properties"]]
    if missing:
        raise CatalogImportError(f"{where}: key field {missing[0]!r} is not in the stream's schema")
    time_field = _event_time(entry, event_time, where, stream)
    schema = normalised(entry["schema"])
    schema.update(
        {
            "title": f"{provider}/{stream}",
            "description": f"{provider}/{stream}, imported from the catalog stream {where}.",
            "type": "object",
            "x-cdp-event-time": time_field,
            "x-cdp-key": list(key),
            "required": list(dict.fromkeys([*schema.get("required", []), *key, time_field])),
        }
    )
    return schema


def import_catalog(
    catalog: dict,
    provider: str,
    streams: dict[str, str | None] | None = None,
    event_times: dict[str, str] | None = None,
    keys: dict[str, list[str]] | None = None,
) -> list[ImportedStream]:
    """The registry schemas of `catalog`'s streams under `provider`: those of `streams` (tap stream
    id → registry name, None for its catalog `stream` name) or, when None, every stream under its
    catalog `stream` name. `event_times`
    and `keys` choose a stream's event-time field and key (by registry name)."""
    checked_name("provider", provider)
    entries = {entry.get("tap_stream_id") or entry.get("stream"): entry for entry in catalog.get("streams", [])}
    unknown = sorted(set(streams or {}) - set(entries))
    if unknown:
        raise CatalogImportError(f"{unknown[0]}: not a stream of the catalog (it has {', '.join(sorted(entries))})")
    streams = {
        tap_id: name or entries[tap_id].get("stream") or tap_id
        for tap_id, name in (streams or dict.fromkeys(entries)).items()
    }
    imported = []
    for tap_id, name in streams.items():
        try:
            checked_name("stream", name)
        except ValueError as error:
            raise CatalogImportError(f"{tap_id}: {error}; rename it with --stream {tap_id}=NAME") from None
        event_time = (event_times or {}).get(name)
        schema = registry_schema(entries[tap_id], provider, name, event_time, (keys or {}).get(name))
        imported.append(ImportedStream(tap_id, name, schema))
    return imported
