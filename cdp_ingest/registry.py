"""The schema registry: versioned JSON Schemas per provider/stream.

Shipped schemas are `cdp_ingest/schemas/{provider}/{stream}/v{N}.json`, in the package; schemas a
user registers (`cdp schemas import`) are `{provider}/{stream}/v{N}.json` under
`CDP_SCHEMA_DIR` (default `.cdp/schemas`, under `CDP_STATE_DIR`), outside the package, so an
upgrade never overwrites them. A stream's versions are those of both places, in version order.
Each version must be backward compatible with the one before: new optional fields are fine;
removing a field, changing its type, adding a required field, or changing the key or the event
time is a breaking change, rejected with an error naming the field. Two annotations tell the
platform about a stream: `x-cdp-event-time` (the field that dates a record) and `x-cdp-key` (its
natural key); one about a field: `x-cdp-pii: true`, personal data (masked in the warehouse for
tenant roles without the PII grant; adding or removing it is not a breaking change). Fields seen
in data but not in the schema are drift.
"""

import itertools
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import fastjsonschema
from jsonschema.validators import validator_for

from cdp_resources.settings import state_dir

SCHEMA_DIR = Path(__file__).parent / "schemas"
PII_ANNOTATION = "x-cdp-pii"
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")


class BreakingSchemaChange(ValueError):
    """A new schema version that old data or old readers cannot live with."""

    def __init__(self, stream: str, field_path: str, reason: str):
        super().__init__(f"breaking change to {stream}: field '{field_path}' {reason}")
        self.stream, self.field_path, self.reason = stream, field_path, reason


class UnknownStream(KeyError):
    def __str__(self) -> str:
        return f"no schema registered for stream {self.args[0]}"


def _without_formats(schema):
    """The schema with `format` keywords removed: formats annotate, they do not reject (as in jsonschema)."""
    if isinstance(schema, dict):
        return {k: _without_formats(v) for k, v in schema.items() if not (k == "format" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_without_formats(v) for v in schema]
    return schema


class SchemaCheck:
    """Validation at fastjsonschema's speed, with jsonschema's messages for the records that fail."""

    def __init__(self, schema: dict):
        self.explainer = validator_for(schema)(schema)
        try:
            self.fast = fastjsonschema.compile(_without_formats(schema))
        except fastjsonschema.JsonSchemaDefinitionException:
            self.fast = None  # a schema fastjsonschema cannot compile: jsonschema alone decides

    def errors(self, record: object) -> list[str]:
        """Readable violations of `record` (empty when valid)."""
        if self.fast is not None:
            try:
                self.fast(record)
                return []
            except fastjsonschema.JsonSchemaValueException:
                pass
        return [
            f"{'.'.join(str(p) for p in error.absolute_path) or '(record)'}: {error.message}"
            for error in sorted(self.explainer.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
        ]


def _types(node: dict) -> set[str]:
    kind = node.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def registered_schema_dir() -> Path:
    """Where user-registered schemas live: `CDP_SCHEMA_DIR`, default `.cdp/schemas` (under `CDP_STATE_DIR`)."""
    return Path(os.environ.get("CDP_SCHEMA_DIR", state_dir() / "schemas")).resolve()


def breaking_changes(old: dict, new: dict, path: str = "") -> list[tuple[str, str]]:
    """(field, reason) for every way `new` breaks data or readers of `old`."""
    problems = []
    if not path:  # the stream's annotations: what its tables are keyed and dated by
        for annotation in ("x-cdp-key", "x-cdp-event-time"):
            if old.get(annotation) != new.get(annotation):
                problems.append((annotation, f"changed from {old.get(annotation)} to {new.get(annotation)}"))
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_field in old_props.items():
        where = f"{path}{name}"
        if name not in new_props:
            problems.append((where, "was removed"))
            continue
        new_field = new_props[name]
        if not _types(old_field) <= _types(new_field):
            problems.append((where, f"changed type from {sorted(_types(old_field))} to {sorted(_types(new_field))}"))
        problems.extend(breaking_changes(old_field, new_field, f"{where}."))
        if "items" in old_field and "items" in new_field:
            problems.extend(breaking_changes(old_field["items"], new_field["items"], f"{where}[]."))
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append((f"{path}{name}", "became required"))
    return problems


def tap_schema_conflicts(registered: dict, tap: dict, path: str = "") -> list[tuple[str, str]]:
    """(field, reason) where a source's own schema cannot produce data the registry accepts: a field
    the registry requires that the source lacks, or a field typed differently (nullability aside,
    since taps mark nearly everything nullable; actual nulls are caught record by record)."""
    problems = []
    tap_props = tap.get("properties", {})
    for name in registered.get("required", []):
        if tap_props and name not in tap_props:
            problems.append((f"{path}{name}", "is required by the registry but missing from the source schema"))
    for name, field_schema in registered.get("properties", {}).items():
        if name in tap_props and _types(tap_props[name]) and _types(field_schema):
            extra = _types(tap_props[name]) - _types(field_schema) - {"null"}
            if extra and not (extra == {"integer"} and "number" in _types(field_schema)):
                problems.append(
                    (
                        f"{path}{name}",
                        f"is {sorted(_types(tap_props[name]))} in the source, "
                        f"{sorted(_types(field_schema))} in the registry",
                    )
                )
            problems.extend(tap_schema_conflicts(field_schema, tap_props[name], f"{path}{name}."))
    return problems


def drift_fields(record: dict, schema: dict, path: str = "") -> list[tuple[str, object]]:
    """(field path, value) for each field of `record` that `schema` does not declare."""
    found = []
    properties = schema.get("properties", {})
    for name, value in record.items():
        if name not in properties:
            found.append((f"{path}{name}", value))
        elif isinstance(value, dict) and "properties" in properties[name]:
            found.extend(drift_fields(value, properties[name], f"{path}{name}."))
    return found


@dataclass
class RegisteredSchema:
    provider: str
    stream: str
    version: int
    schema: dict

    @cached_property
    def check(self) -> SchemaCheck:
        return SchemaCheck(self.schema)

    @property
    def event_time_field(self) -> str | None:
        return self.schema.get("x-cdp-event-time")

    @property
    def key(self) -> list[str]:
        return self.schema.get("x-cdp-key", [])

    @property
    def description(self) -> str:
        return self.schema.get("description", f"{self.provider}/{self.stream}")

    def errors(self, record: dict) -> list[str]:
        """Readable schema violations of `record` (empty when valid)."""
        return self.check.errors(record)


@dataclass
class DriftReport:
    """Per field: how many records carried it, and one example value."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, record: dict, schema: dict) -> None:
        for path, value in drift_fields(record, schema):
            self.counts[path] += 1
            self.examples.setdefault(path, value)

    def merge(self, other: "DriftReport") -> None:
        self.counts.update(other.counts)
        for path, value in other.examples.items():
            self.examples.setdefault(path, value)

    def as_dict(self) -> dict:
        return {path: {"count": count, "example": self.examples[path]} for path, count in sorted(self.counts.items())}


class SchemaRegistry:
    """All versions of every stream's schema under `root` (and under `registered`, the user's
    directory, where `register` writes when it is given), checked for compatibility on load."""

    def __init__(self, root: Path = SCHEMA_DIR, registered: Path | None = None):
        self.root = Path(root)
        self.registered = Path(registered) if registered is not None else None
        files: dict[tuple[str, str], dict[int, Path]] = {}
        for directory in (self.root, self.registered):
            if directory is None:
                continue
            for stream_dir in sorted(p for p in directory.glob("*/*") if p.is_dir()):
                versions = files.setdefault((stream_dir.parent.name, stream_dir.name), {})
                for path in stream_dir.iterdir():
                    if m := _VERSION_FILE.match(path.name):
                        if int(m[1]) in versions:
                            raise ValueError(f"schema version registered twice: {versions[int(m[1])]} and {path}")
                        versions[int(m[1])] = path
        self._versions: dict[tuple[str, str], list[RegisteredSchema]] = {}
        for (provider, stream), paths in sorted(files.items()):
            versions = [RegisteredSchema(provider, stream, n, json.loads(paths[n].read_text())) for n in sorted(paths)]
            for before, after in itertools.pairwise(versions):
                self._raise_if_breaking(before, after.schema)
            if versions:
                self._versions[(provider, stream)] = versions

    @classmethod
    def configured(cls) -> "SchemaRegistry":
        """The platform's registry: the shipped schemas and the user's (`registered_schema_dir`)."""
        return cls(SCHEMA_DIR, registered_schema_dir())

    @staticmethod
    def _raise_if_breaking(current: RegisteredSchema, new: dict) -> None:
        problems = breaking_changes(current.schema, new)
        if problems:
            field_path, reason = problems[0]
            raise BreakingSchemaChange(f"{current.provider}/{current.stream} v{current.version}", field_path, reason)

    def streams(self) -> list[tuple[str, str]]:
        return sorted(self._versions)

    def latest(self, provider: str, stream: str) -> RegisteredSchema:
        try:
            return self._versions[(provider, stream)][-1]
        except KeyError:
            raise UnknownStream(f"{provider}/{stream}") from None

    def knows(self, provider: str, stream: str) -> bool:
        return (provider, stream) in self._versions

    def check_compatible(self, provider: str, stream: str, new: dict) -> None:
        """Raise `BreakingSchemaChange` if `new` breaks the latest registered version."""
        self._raise_if_breaking(self.latest(provider, stream), new)

    def register(self, provider: str, stream: str, new: dict) -> RegisteredSchema:
        """Add `new` as the next version (the first one for a new stream) after the compatibility
        check, in the user's directory when there is one."""
        if self.knows(provider, stream):
            self.check_compatible(provider, stream, new)
            version = self.latest(provider, stream).version + 1
        else:
            version = 1
        target = (self.registered or self.root) / provider / stream / f"v{version}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(new, indent=2) + "\n")
        registered = RegisteredSchema(provider, stream, version, new)
        self._versions.setdefault((provider, stream), []).append(registered)
        return registered
