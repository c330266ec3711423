"""Generic curated tables: an entity spec derived from a registered schema, for a stream that has
no hand-written entity (`cdp_transform/entities.py`, which keeps precedence).

The table `{provider}_{stream}` has one typed column per top-level field of the schema (integer →
bigint, number (or integer and number) → double, boolean, a string of format date-time →
timestamp, of format date → date, anything else → string, objects and arrays as their JSON
text), the schema's key (`x-cdp-key`), one row per key across every day, its latest version
(newest event-time field first, then the latest delivery; `EntitySpec.current_state`,
`cdp_transform/current_state.py`), the columns of the fields annotated `x-cdp-pii` as personal
data (`EntitySpec.pii`), the lineage columns, and two critical rules: every field converts to its
type, the key is present. `CURATED_ENTITIES` is what the platform curates: the hand-written
entities and a generic one for every other stream of the configured registry.
"""

import re

from cdp_ingest.registry import PII_ANNOTATION, RegisteredSchema, SchemaRegistry
from cdp_resources.names import checked_name, is_valid_name
from cdp_transform.conform import Field
from cdp_transform.entities import ENTITIES, EntitySpec
from cdp_transform.lineage import LINEAGE
from cdp_transform.rules import not_null, typed_fields

# Columns the platform adds to every curated row; a field of the same name would clash.
_RESERVED = {*LINEAGE, "quality_warnings"}
_STRING_FORMATS = {"date-time": "timestamp", "date": "date"}
_JSON_TYPES = {"integer": "bigint", "number": "double", "boolean": "boolean"}


class GenericTableError(ValueError):
    """A registered schema that cannot become a generic curated table; the message names the field."""


def column_name(field: str) -> str:
    """The curated column of a source field: lower case, runs of other characters as `_`
    (`LastModifiedDate` → `lastmodifieddate`, `first name` → `first_name`)."""
    return re.sub(r"[^a-z0-9_]+", "_", field.lower()).strip("_")


def _kind(schema: dict) -> str:
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    kinds.discard("null")
    if kinds == {"integer", "number"}:  # what taps that infer types from files give a number
        return "double"
    if len(kinds) != 1:
        return "string"  # no type, or several: kept as the text read
    (kind,) = kinds
    if kind == "string":
        return _STRING_FORMATS.get(schema.get("format"), "string")
    return _JSON_TYPES.get(kind, "string")


def _quoted(field: str) -> str:
    return "`" + field.replace("`", "``") + "`"


def generic_entity(registered: RegisteredSchema) -> EntitySpec:
    """The generic curated table of `registered`; raises `GenericTableError` naming the field that
    cannot become a column, or the missing key."""
    where = f"{registered.provider}/{registered.stream}"
    table = f"{registered.provider}_{registered.stream}"
    if not is_valid_name(table):
        raise GenericTableError(f"{where}: the generic table name {table!r} breaks the name rule")
    properties = registered.schema.get("properties", {})
    columns: dict[str, str] = {}
    for field in properties:
        column = column_name(field)
        if not is_valid_name(column) or column in _RESERVED:
            raise GenericTableError(f"{where}: field {field!r} cannot be a column (as {column!r})")
        if column in columns.values():
            raise GenericTableError(f"{where}: fields {field!r} and another both become column {column!r}")
        columns[field] = column
    if not registered.key:
        raise GenericTableError(f"{where}: the schema has no key (x-cdp-key); a curated table keeps one row per key")
    for field in (*registered.key, registered.event_time_field):
        if field is not None and field not in columns:
            raise GenericTableError(f"{where}: key or event-time field {field!r} is not among the fields")
    fields = [Field(columns[f], _quoted(f), _kind(s)) for f, s in properties.items()]
    key = [columns[f] for f in registered.key]
    event_time = registered.event_time_field
    return EntitySpec(
        table,
        registered.provider,
        registered.stream,
        ", ".join(f"{_quoted(f)} string" for f in properties),
        fields,
        key=key,
        newest_first=[columns[event_time]] if event_time and _kind(properties[event_time]) != "string" else [],
        rules=[typed_fields(), not_null(*key)],
        description=f"{registered.description} Generic curated table from schema v{registered.version}: "
        "typed fields, one row per key: its latest version.",
        current_state=True,
        pii=tuple(columns[f] for f, s in properties.items() if s.get(PII_ANNOTATION) is True),
    )


def curated_entities(registry: SchemaRegistry) -> list[EntitySpec]:
    """The hand-written entities and a generic one for every other stream of `registry`."""
    handwritten = {(spec.provider, spec.stream) for spec in ENTITIES}
    tables = {spec.table for spec in ENTITIES}
    generic = []
    for provider, stream in registry.streams():
        if (provider, stream) in handwritten:
            continue
        spec = generic_entity(registry.latest(provider, stream))
        if spec.table in tables:
            raise GenericTableError(f"{provider}/{stream}: table {spec.table!r} is already a curated table")
        tables.add(checked_name("table", spec.table))
        generic.append(spec)
    return [*ENTITIES, *generic]


CURATED_ENTITIES = curated_entities(SchemaRegistry.configured())
