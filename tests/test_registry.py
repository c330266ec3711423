"""The schema registry: compatible evolution accepted, breaking changes rejected naming the field."""

import copy
import json

import pytest

from cdp_ingest.registry import BreakingSchemaChange, DriftReport, SchemaRegistry, UnknownStream, tap_schema_conflicts
from cdp_resources.raw_zone import event_day

BASE = {
    "type": "object",
    "x-cdp-event-time": "created_at",
    "x-cdp-key": ["id"],
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": ["string", "null"]},
        "address": {"type": "object", "properties": {"country": {"type": "string"}}},
        "created_at": {"type": "string"},
    },
    "required": ["id", "created_at"],
}


@pytest.fixture
def registry(tmp_path) -> SchemaRegistry:
    registry = SchemaRegistry(tmp_path)
    registry.register("shop", "orders", BASE)
    return registry


def test_repository_schemas_load_and_cover_the_sample_streams():
    registry = SchemaRegistry()
    assert len(registry.streams()) == 11
    for provider, stream in registry.streams():
        latest = registry.latest(provider, stream)
        assert latest.event_time_field in latest.schema["properties"] and latest.key


def test_new_optional_field_is_a_new_version(registry, tmp_path):
    evolved = copy.deepcopy(BASE)
    evolved["properties"]["phone"] = {"type": ["string", "null"]}
    assert registry.register("shop", "orders", evolved).version == 2
    assert (tmp_path / "shop/orders/v2.json").exists()
    assert SchemaRegistry(tmp_path).latest("shop", "orders").version == 2


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda s: s["properties"].pop("email"), "email", "was removed"),
        (lambda s: s["properties"].update(id={"type": "string"}), "id", "changed type"),
        (
            lambda s: s["properties"]["address"]["properties"].update(country={"type": "integer"}),
            "address.country",
            "changed type",
        ),
        (lambda s: s["required"].append("email"), "email", "became required"),
    ],
)
def test_breaking_changes_are_rejected_naming_the_field(registry, tmp_path, change, field, words):
    broken = copy.deepcopy(BASE)
    change(broken)
    with pytest.raises(BreakingSchemaChange) as error:
        registry.register("shop", "orders", broken)
    assert f"field '{field}' {words}" in str(error.value)
    assert not (tmp_path / "shop/orders/v2.json").exists()


def test_a_breaking_version_in_the_repository_fails_loading(tmp_path):
    (tmp_path / "shop/orders").mkdir(parents=True)
    (tmp_path / "shop/orders/v1.json").write_text(json.dumps(BASE))
    removed = copy.deepcopy(BASE)
    removed["properties"].pop("email")
    (tmp_path / "shop/orders/v2.json").write_text(json.dumps(removed))
    with pytest.raises(BreakingSchemaChange, match="field 'email' was removed"):
        SchemaRegistry(tmp_path)


def test_validation_errors_and_unknown_streams(registry):
    schema = registry.latest("shop", "orders")
    assert schema.errors({"id": 1, "created_at": "2026-01-01"}) == []
    errors = schema.errors({"id": "x", "email": 5})
    assert any(e.startswith("id:") for e in errors) and any("created_at" in e for e in errors)
    with pytest.raises(UnknownStream, match="shop/refunds"):
        registry.latest("shop", "refunds")


def test_drift_counts_fields_with_an_example():
    drift = DriftReport()
    drift.add({"id": 1, "created_at": "x", "coupon": "A", "address": {"country": "US", "zip": "10001"}}, BASE)
    drift.add({"id": 2, "created_at": "x", "coupon": "B"}, BASE)
    assert drift.as_dict() == {"address.zip": {"count": 1, "example": "10001"}, "coupon": {"count": 2, "example": "A"}}


def test_tap_schema_conflicts_ignore_nullability_but_not_types():
    nullable = {"properties": {"id": {"type": ["integer", "null"]}, "created_at": {"type": ["string", "null"]}}}
    assert tap_schema_conflicts(BASE, nullable) == []
    retyped = {"properties": {"id": {"type": ["string"]}, "created_at": {"type": "string"}}}
    assert tap_schema_conflicts(BASE, retyped)[0][0] == "id"
    missing = {"properties": {"id": {"type": "integer"}}}
    assert tap_schema_conflicts(BASE, missing) == [
        ("created_at", "is required by the registry but missing from the source schema")
    ]


@pytest.mark.parametrize(
    "value, day",
    [
        ("2026-01-05T23:30:00-05:00", "2026-01-06"),
        ("2026-01-05T15:15:00.000+0000", "2026-01-05"),
        (1767657300000, "2026-01-05"),
        (1767657300, "2026-01-05"),
        ("1767657300000", "2026-01-05"),
        ("2026-01-05 23:59:59", "2026-01-05"),
        ("2026-01-05", "2026-01-05"),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_event_day_reads_every_source_format(value, day):
    assert (event_day(value).isoformat() if event_day(value) else None) == day
