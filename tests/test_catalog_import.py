"""`cdp schemas import`: a tap's catalog becomes registry schemas under the user's schema directory,
checked by the registry's compatibility rules; each new stream gets a generic curated table spec.
(The end-to-end path, with a real tap's catalog, is in tests/test_sources.py.)"""

import copy
import io
import json

import pytest

from cdp_cli.main import main
from cdp_ingest.catalog_import import CatalogImportError, import_catalog
from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SCHEMA_DIR, SchemaRegistry
from cdp_ingest.singer_target import SingerTarget
from cdp_resources.lake import LakeResource
from cdp_transform.generic import GenericTableError, curated_entities, generic_entity

# Shaped as pipelinewise-tap-postgres discovers a table: types as lists, key in the metadata,
# numeric columns with `multipleOf`, no replication key.
CATALOG = {
    "streams": [
        {
            "tap_stream_id": "public-subscriptions",
            "stream": "subscriptions",
            "table_name": "subscriptions",
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": ["integer"], "minimum": -2147483648, "maximum": 2147483647},
                    "plan": {"type": ["null", "string"]},
                    "price": {  # a numeric(10,2), as the tap writes it: draft 4
                        "type": ["null", "number"],
                        "multipleOf": 0.01,
                        "exclusiveMaximum": True,
                        "maximum": 100000000,
                        "exclusiveMinimum": True,
                        "minimum": -100000000,
                    },  # fmt: skip
                    "active": {"type": ["null", "boolean"]},
                    "starts_on": {"type": ["null", "string"], "format": "date"},
                    "updated_at": {"type": ["string"], "format": "date-time"},
                    "extra": {"type": ["null", "object"], "properties": {}},
                },
            },
            "metadata": [
                {"breadcrumb": [], "metadata": {"table-key-properties": ["id"], "schema-name": "public"}},
                {"breadcrumb": ["properties", "id"], "metadata": {"sql-datatype": "integer"}},
            ],
        },
        {
            "tap_stream_id": "public-Audit Log",
            "stream": "Audit Log",
            "key_properties": [],
            "schema": {"type": "object", "properties": {"at": {"type": ["string"], "format": "date-time"}}},
            "metadata": [],
        },
    ]
}


def test_a_catalog_stream_becomes_a_registry_schema_and_a_generic_table(tmp_path):
    (imported,) = import_catalog(CATALOG, "billing", {"public-subscriptions": None}, {"subscriptions": "updated_at"})
    schema = imported.schema
    assert (imported.stream, schema["x-cdp-key"], schema["x-cdp-event-time"]) == ("subscriptions", ["id"], "updated_at")
    assert schema["required"] == ["id", "updated_at"] and "multipleOf" not in json.dumps(schema)
    registry = SchemaRegistry(tmp_path / "shipped", tmp_path / "mine")
    registered = registry.register("billing", "subscriptions", schema)
    assert (tmp_path / "mine/billing/subscriptions/v1.json").exists()
    assert registered.errors({"id": 1, "price": 19.99, "updated_at": "2026-11-01T10:00:00+00:00"}) == []
    assert registered.errors({"id": 1, "price": 1e8, "updated_at": "2026-11-01T10:00:00+00:00"}) != []

    spec = generic_entity(registered)
    kinds = {field.name: field.kind for field in spec.fields}
    assert (spec.table, spec.key, spec.newest_first) == ("billing_subscriptions", ["id"], ["updated_at"])
    assert kinds == {
        "id": "bigint", "plan": "string", "price": "double", "active": "boolean", "starts_on": "date",
        "updated_at": "timestamp", "extra": "string",
    }  # fmt: skip
    # Hand-written entities keep precedence: shopify/customers stays shopify_customers.
    entities = curated_entities(SchemaRegistry(SCHEMA_DIR, tmp_path / "mine"))
    assert [s.table for s in entities if s.provider in ("billing", "shopify") and s.stream != "orders"] == [
        "shopify_customers",
        "products",
        "billing_subscriptions",
    ]


@pytest.mark.parametrize(
    ("streams", "options", "message"),
    [
        ({"public-subscriptions": None}, {}, "no event-time field; choose one with --event-time subscriptions=FIELD"),
        ({"public-Audit Log": None}, {}, "stream name 'Audit Log' is not allowed"),
        ({"public-Audit Log": "audit_log"}, {"event_times": {"audit_log": "at"}}, "--key audit_log=FIELD"),
        ({"public-subscriptions": None}, {"event_times": {"subscriptions": "nope"}}, "'nope' is not in the stream"),
        ({"public-nothing": None}, {}, "not a stream of the catalog"),
    ],
)
def test_a_stream_that_cannot_be_registered_is_refused_with_the_reason(streams, options, message):
    with pytest.raises(CatalogImportError, match=message.replace("(", r"\(")):
        import_catalog(CATALOG, "billing", streams, **options)


def test_a_field_that_cannot_be_a_column_is_refused_naming_it(tmp_path):
    (imported,) = import_catalog(CATALOG, "billing", {"public-subscriptions": None}, {"subscriptions": "updated_at"})
    imported.schema["properties"]["event_date"] = {"type": ["null", "string"]}
    registered = SchemaRegistry(tmp_path).register("billing", "subscriptions", imported.schema)
    with pytest.raises(GenericTableError, match="field 'event_date' cannot be a column"):
        generic_entity(registered)


def test_cdp_schemas_import_registers_then_evolves_and_refuses_a_breaking_change(tmp_path, capsys):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    arguments = ["schemas", "import", str(catalog), "--provider", "billing", "--stream", "public-subscriptions"]
    arguments += ["--event-time", "subscriptions=updated_at", "--schema-dir", str(tmp_path / "schemas")]
    assert main(arguments) == 0
    assert "billing/subscriptions: registered v1 from public-subscriptions (key id; event time updated_at)" in (
        capsys.readouterr().out
    )
    assert main(arguments) == 0 and "billing/subscriptions: unchanged (v1)" in capsys.readouterr().out

    evolved = copy.deepcopy(CATALOG)  # a new nullable column: compatible, a new version
    evolved["streams"][0]["schema"]["properties"]["seats"] = {"type": ["null", "integer"]}
    catalog.write_text(json.dumps(evolved))
    assert main(arguments) == 0 and "registered v2" in capsys.readouterr().out

    del evolved["streams"][0]["schema"]["properties"]["plan"]  # a dropped column: breaking
    catalog.write_text(json.dumps(evolved))
    assert main(arguments) == 1
    assert "refused, nothing registered: breaking change to billing/subscriptions v2: field 'plan' was removed" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in (tmp_path / "schemas/billing/subscriptions").iterdir()) == ["v1.json", "v2.json"]


def test_user_versions_follow_the_shipped_ones_and_may_not_collide(tmp_path):
    shipped = SchemaRegistry().latest("shopify", "products")
    evolved = copy.deepcopy(shipped.schema)
    evolved["properties"]["status"] = {"type": ["string", "null"]}
    registry = SchemaRegistry(SCHEMA_DIR, tmp_path)
    assert registry.register("shopify", "products", evolved).version == shipped.version + 1
    assert (tmp_path / f"shopify/products/v{shipped.version + 1}.json").exists()
    assert SchemaRegistry(SCHEMA_DIR, tmp_path).latest("shopify", "products").schema == evolved

    (tmp_path / f"shopify/products/v{shipped.version}.json").write_text(json.dumps(shipped.schema))
    with pytest.raises(ValueError, match="schema version registered twice"):
        SchemaRegistry(SCHEMA_DIR, tmp_path)


def test_the_target_reads_a_taps_draft_4_numeric_columns(tmp_path):
    """tap-postgres's numeric columns (draft 4's boolean exclusive bounds, a decimal `multipleOf`):
    the target checks records against the tap's schema as the tap meant it, so prices land."""
    (imported,) = import_catalog(CATALOG, "billing", {"public-subscriptions": None}, {"subscriptions": "updated_at"})
    registry = SchemaRegistry(tmp_path / "shipped", tmp_path / "mine")
    registry.register("billing", "subscriptions", imported.schema)
    writer = RawBatchWriter(LakeResource(base_uri=str(tmp_path / "lake")), registry, "acme_corp", "billing", "test")
    target = SingerTarget(writer, io.StringIO(), io.StringIO())
    entry = CATALOG["streams"][0]
    messages = [{"type": "SCHEMA", "stream": "subscriptions", "schema": entry["schema"], "key_properties": ["id"]}]
    messages += [
        {"type": "RECORD", "stream": "subscriptions", "record": {"id": i, "price": price, "updated_at": "2026-11-01T10:00:00Z"}}
        for i, price in enumerate([19.99, 0.07, 123456.78, 100000000], start=1)
    ]  # fmt: skip
    target.run([json.dumps(message) for message in messages])
    assert writer.landed == {"subscriptions": 3} and dict(writer.dead_letters.counts) == {"schema_violation": 1}
