"""A tenant's runs write only under its own prefixes: the raw writer (Singer target, file drops,
webhook batcher, reprocessing) and its dead letters refuse a key outside `{zone}/{tenant}/` and
write nothing, on a local lake and on S3."""

import pytest

from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_resources.names import InvalidName
from cdp_resources.raw_zone import TenantPrefixError, check_tenant_prefix

CHARGE = {"id": "ch_1", "amount": "12", "currency": "usd", "created": 1767657300}


def written(lake) -> list[str]:
    return [obj.key for prefix in ("raw/", "dlq/", "globex/", "acme_corp/") for obj in lake.list(prefix)]


def test_keys_under_the_own_prefix_pass_and_others_are_refused():
    for key in ("raw/acme_corp/stripe/charges/year=2026/", "dlq/acme_corp/stripe/x/", "drops/acme_corp/a/b/c.csv"):
        assert check_tenant_prefix("acme_corp", key) == key
    for tenant, key in (
        ("acme_corp", "raw/globex/stripe/charges/"),
        ("acme_corp", "curated/orders/"),
        ("acme_corp", "raw/acme_corp/../globex/stripe/"),
        ("acme_corp", "raw/acme_corp//stripe/"),
        ("acme_corp", "raw/acme_corp\\..\\globex/stripe/"),
        ("", "raw//stripe/"),
        ("a/b", "raw/a/b/stripe/"),
    ):
        with pytest.raises(TenantPrefixError, match="outside its own prefix"):
            check_tenant_prefix(tenant, key)


@pytest.mark.parametrize("tenant", ["../globex", "acme_corp/../globex", "a/b", ""])
def test_a_writer_for_a_tenant_name_with_a_path_writes_nothing(any_lake, tenant):
    # The name rule refuses such a tenant when the writer is made; the prefix check behind it is
    # the unit test above.
    with pytest.raises((InvalidName, TenantPrefixError)):
        records = RawBatchWriter(any_lake, SchemaRegistry(), tenant, "stripe", source="test")
        records.add("charges", CHARGE)
        records.add("charges", {"id": "bad"})  # invalid: a dead letter, under the same rule
        records.flush()
    assert written(any_lake) == []


def test_a_writer_for_a_good_tenant_writes_under_its_prefix(any_lake):
    writer = RawBatchWriter(any_lake, SchemaRegistry(), "acme_corp", "stripe", source="test")
    writer.add("charges", CHARGE)
    writer.add("charges", {"id": "bad"})
    writer.flush()
    keys = written(any_lake)
    assert len(keys) == 2 and {key.split("/")[1] for key in keys} == {"acme_corp"}
