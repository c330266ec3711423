"""Registry schemas from a Singer tap's catalog (its `--discover` output), for `cdp schemas import`.

Each catalog stream becomes the registry schema of `{provider}/{name}`: the tap's JSON schema
(`singer_schema.normalised`: draft 4's exclusive bounds rewritten, `multipleOf` dropped), its
`key_properties` (or the metadata's `table-key-properties`) as `x-cdp-key`, and as `x-cdp-event-time` the field chosen for it, else the
replication key the catalog selects, else its only valid replication key. Key and event-time
fields are required. Fields whose names look personal (`looks_personal`) are proposed as
`x-cdp-pii: true` (the warehouse masks them for tenant roles without the PII grant); a field the
stream's registered version already has keeps that version's choice; `--pii` / `--no-pii` decide
over both. Nothing here writes: `SchemaRegistry.register` does, after its checks.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cdp_ingest.registry import PII_ANNOTATION
from cdp_ingest.singer_schema import normalised
from cdp_resources.names import checked_name

# Personal data, found in a field's name in lower case with letters and digits only
# (`EmailAddress`, `contact_email`, `Mobile`, `first name`, `billingStreet`, `DateOfBirth`)...
_PERSONAL = re.compile(
    r"e?mail|phone|mobile|(first|last|full|given|family|middle|sur)name|address|street|postal|postcode|zip|birth"
)
# ... or as a whole word (`ip`, `dob`: too short to find inside other words) ...
_PERSONAL_WORDS = {"ip", "dob", "zip"}
# ... unless the name says it is about the data, not the data: a consent status, a flag, a count.
_ABOUT = re.compile(r"consent|opt(ed)?(in|out)|subscri|marketing")
_ABOUT_WORDS = {"opt", "status", "verified", "valid", "bounced", "count", "type", "domain", "hash", "sha256"}
_NOT_PERSONAL_TYPES = {"boolean", "integer", "number"}


class CatalogImportError(ValueError):
    """A catalog stream that cannot become a registry schema; the message names the stream."""


@dataclass(frozen=True)
class ImportedStream:
    tap_stream_id: str
    stream: str  # the registry stream name
    schema: dict
    proposed_pii: list[str] = field(default_factory=list)  # fields marked personal by their name, to review

    @property
    def pii(self) -> list[str]:
        """The fields marked `x-cdp-pii`."""
        return [name for name, node in self.schema["properties"].items() if node.get(PII_ANNOTATION) is True]


def looks_personal(name: str, node: dict) -> bool:
    """Whether a field named `name` (JSON schema `node`) looks like personal data by its name:
    email, phone or mobile, first, last or full name, address, street, postal code, zip, IP
    address, birth date. Not a flag, number or a status about it (`email_marketing_consent`)."""
    kinds = node.get("type", [])
    kinds = ({kinds} if isinstance(kinds, str) else set(kinds)) - {"null"}
    if kinds and kinds <= _NOT_PERSONAL_TYPES:
        return False
    letters = re.sub(r"[^a-z0-9]", "", name.lower())
    # Words: split at non-letters and before an upper-case letter that follows a lower-case one.
    words = {w.lower() for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", name) if w}
    personal = _PERSONAL.search(letters) or words & _PERSONAL_WORDS
    return bool(personal) and not (_ABOUT.search(letters) or words & _ABOUT_WORDS)


def mark_personal(schema: dict, where: str, previous: dict | None, pii: list[str], no_pii: list[str]) -> list[str]:
    """Sets `x-cdp-pii` on `schema`'s fields: `pii` yes, `no_pii` no, a field of the `previous`
    version as it was there, any other as `looks_personal` says. Returns the fields proposed by
    their names (not decided by the user nor by the previous version)."""
    properties = schema["properties"]
    unknown = [name for name in (*pii, *no_pii) if name not in properties]
    if unknown:
        raise CatalogImportError(f"{where}: --pii/--no-pii field {unknown[0]!r} is not in the stream's schema")
    before = (previous or {}).get("properties", {})
    proposed = []
    for name, node in properties.items():
        if name in pii or name in no_pii:
            personal = name in pii
        elif name in before:
            personal = before[name].get(PII_ANNOTATION) is True
        else:
            personal = looks_personal(name, node)
            if personal:
                proposed.append(name)
        node.pop(PII_ANNOTATION, None)
        if personal:
            node[PII_ANNOTATION] = True
    return proposed


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
    pii: dict[str, list[str]] | None = None,
    no_pii: dict[str, list[str]] | None = None,
    previous: Callable[[str], dict | None] = lambda stream: None,
) -> list[ImportedStream]:
    """The registry schemas of `catalog`'s streams under `provider`: those of `streams` (tap stream
    id → registry name, None for its catalog `stream` name) or, when None, every stream under its
    catalog `stream` name. `event_times`
    and `keys` choose a stream's event-time field and key (by registry name), `pii` and `no_pii`
    the fields that are personal data or not (`mark_personal`); `previous` gives a stream's
    registered schema (None for a new stream)."""
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
        proposed = mark_personal(
            schema, tap_id, previous(name), (pii or {}).get(name, []), (no_pii or {}).get(name, [])
        )
        imported.append(ImportedStream(tap_id, name, schema, proposed))
    return imported
