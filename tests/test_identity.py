"""Identity resolution: connected components against union-find, merge rules on small graphs,
stable ids and recorded merges, SCD type 2 history; and on generator data, accuracy against its
ground truth, stability when a day is added, and historic == incremental."""

import random
import re
from datetime import date, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from cdp_assets.keys import MAP_KEY
from cdp_cli.demo import accuracy_lines
from cdp_cli.main import main
from cdp_identity.accuracy import pair_accuracy, profile_kinds
from cdp_identity.components import connected_components
from cdp_identity.profiles import update_history
from cdp_identity.resolve import resolve
from cdp_identity.sources import node_id
from cdp_resources.lake_paths import EXCLUSIONS, HISTORY, MAP, MERGES, PROFILES
from cdp_resources.raw_zone import decode_ndjson_gz
from tests.conftest import CURATED_CONFIG, IDENTITY_GROUPS, LAKE_DAILY_CONFIG, copy_lake, run_assets

CONFIG = CURATED_CONFIG
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)


# --- small graphs -------------------------------------------------------------------------------


def test_connected_components_match_union_find(spark):
    rng = random.Random(3)
    edges = [(rng.randrange(2_000), rng.randrange(2_000)) for _ in range(1_500)] + [
        (i, i + 1) for i in range(5_000, 5_040)
    ]
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        a, b = find(u), find(v)
        parent[max(a, b)] = min(a, b)
    expected = {x: find(x) for x in list(parent)}
    components, rounds = connected_components(spark.createDataFrame(edges, "u bigint, v bigint"))
    assert {r.node: r.component for r in components.collect()} == expected
    assert 1 < rounds < 20  # the 40-node chain needs several rounds, logarithmically many


def graph(spark, tenant: str, records: list[list[tuple[str, str]]], seen: list[datetime] | None = None):
    """Nodes and edges of records given as [(id_type, id_value), …] (first identifier = the record's anchor)."""
    seen = seen or [datetime(2026, 1, 1, 12)] * len(records)
    occurrences = [
        (tenant, kind, value, when) for record, when in zip(records, seen, strict=True) for kind, value in record
    ]
    frame = spark.createDataFrame(
        occurrences, "tenant_id string, id_type string, id_value string, seen_at timestamp"
    ).withColumn("node_id", node_id(F.col("tenant_id"), F.col("id_type"), F.col("id_value")))
    nodes = frame.groupBy("tenant_id", "node_id", "id_type", "id_value").agg(
        F.min("seen_at").alias("first_seen"), F.max("seen_at").alias("last_seen")
    )
    pairs = [(tenant, record[0][0], record[0][1], kind, value) for record in records for kind, value in record[1:]]
    edges = spark.createDataFrame(
        pairs, "tenant_id string, src_type string, src_value string, dst_type string, dst_value string"
    ).select(
        "tenant_id",
        node_id(F.col("tenant_id"), F.col("src_type"), F.col("src_value")).alias("src"),
        node_id(F.col("tenant_id"), F.col("dst_type"), F.col("dst_value")).alias("dst"),
        "src_type",
        "dst_type",
    )
    return nodes, edges


def profiles_of(resolution) -> dict[str, str]:
    return {f"{r.id_type}:{r.id_value}": r.cdp_customer_id for r in resolution.identity_map.collect()}


def test_blocked_and_shared_identifiers_join_nothing(spark):
    shoppers = [
        [
            ("shopify_customer_id", f"10{i}"),
            ("email", f"person{i}@mail.com"),
            ("phone", "0000000000" if i < 2 else f"+1415555010{i}"),
        ]
        for i in range(5)
    ]
    staff_orders = [[("shopify_customer_id", f"10{i}"), ("email", "instore@shop.com")] for i in range(5)]
    billing = [[("stripe_customer_id", f"cus_{i}"), ("email", "billing@acme.com")] for i in range(2)]
    resolution = resolve(spark, *graph(spark, "t", shoppers + staff_orders + billing))
    ids = profiles_of(resolution)
    assert len({ids[f"shopify_customer_id:10{i}"] for i in range(5)}) == 5  # nobody merged through the shared values
    assert ids["stripe_customer_id:cus_0"] != ids["stripe_customer_id:cus_1"]
    assert ids["email:person3@mail.com"] == ids["shopify_customer_id:103"] == ids["phone:+14155550103"]
    excluded = {(r.kind, r.id_value): r.reason for r in resolution.exclusions.collect()}
    assert set(excluded) == {("blocked", "0000000000"), ("blocked", "billing@acme.com"), ("shared", "instore@shop.com")}
    assert "5 distinct shopify_customer_id" in excluded[("shared", "instore@shop.com")]
    assert not any(key.endswith(("instore@shop.com", "billing@acme.com", "0000000000")) for key in ids)


def test_a_weaker_identifier_gives_way_to_a_limit(spark):
    """Two app users who share an email: the email tier would put two app_user_ids in one profile,
    so its edges give way; the users' own stronger links (user id – anonymous id) stay."""
    records = [
        [("app_user_id", "u1"), ("anonymous_id", "a1"), ("email", "family@mail.com")],
        [("app_user_id", "u2"), ("anonymous_id", "a2"), ("email", "family@mail.com")],
        [("shopify_customer_id", "9"), ("email", "solo@mail.com"), ("phone", "+14155550199")],
        [("app_user_id", "u3"), ("email", "solo@mail.com")],
    ]
    resolution = resolve(spark, *graph(spark, "t", records))
    ids = profiles_of(resolution)
    assert ids["app_user_id:u1"] == ids["anonymous_id:a1"] != ids["app_user_id:u2"] == ids["anonymous_id:a2"]
    assert ids["app_user_id:u3"] == ids["shopify_customer_id:9"] == ids["phone:+14155550199"]  # no conflict: joined
    limits = [r for r in resolution.exclusions.collect() if r.kind == "limit"]
    assert limits and all(
        "app_user_id" in r.reason and (r.other_value == "family@mail.com" or r.id_value == "family@mail.com")
        for r in limits
    )


def test_ids_are_stable_and_the_older_id_survives_a_merge(spark):
    day1, day2 = datetime(2026, 1, 1, 9), datetime(2026, 1, 2, 9)
    before = [
        [("shopify_customer_id", "1"), ("email", "ann@mail.com")],
        [("app_user_id", "u7"), ("anonymous_id", "x7")],
    ]
    first = resolve(spark, *graph(spark, "t", before, [day1, day2]))
    old = profiles_of(first)
    previous = first.identity_map.localCheckpoint()
    bridge = [[("app_user_id", "u7"), ("email", "ann@mail.com")]]
    second = resolve(spark, *graph(spark, "t", before + bridge, [day1, day2, day2]), previous)
    new = profiles_of(second)
    assert set(new.values()) == {old["shopify_customer_id:1"]}  # one profile, under the older id
    merges = second.merges.collect()
    assert [(m.event, m.cdp_customer_id, m.surviving_id) for m in merges] == [
        ("merged", old["app_user_id:u7"], old["shopify_customer_id:1"])
    ]
    assert set(merges[0].caused_by) >= {"email:ann@mail.com"}
    rebuilt = profiles_of(resolve(spark, *graph(spark, "t", before + bridge, [day1, day2, day2])))
    assert rebuilt == new  # a rebuild from scratch names profiles the same way


def test_profile_history_is_scd2(spark, tmp_path):
    path = str(tmp_path / "history")
    columns = (
        "tenant_id string, cdp_customer_id string, email string, country string, company_name string, industry string, "
        "orders long, first_order_date date, last_order_date date"
    )

    def day(n):
        return date(2026, 1, n)

    update_history(
        spark,
        path,
        spark.createDataFrame(
            [
                ("t", "a", "a@x.com", "US", None, None, 1, day(1), day(1)),
                ("t", "b", "b@x.com", "GB", None, None, 0, None, None),
            ],
            columns,
        ),
        day(1),
    )
    counts = update_history(
        spark,
        path,
        spark.createDataFrame([("t", "a", "a@x.com", "CA", None, None, 2, day(1), day(2))], columns),
        day(2),
    )
    assert counts == {"opened": 1, "closed": 2}  # a changed; b merged away
    history = spark.read.format("delta").load(path)

    def as_of(d):
        return {
            r.cdp_customer_id: r.country
            for r in history.where(
                (F.col("valid_from") <= F.lit(d)) & (F.col("valid_to").isNull() | (F.col("valid_to") > F.lit(d)))
            ).collect()
        }

    assert as_of(day(1)) == {"a": "US", "b": "GB"} and as_of(day(2)) == {"a": "CA"}
    assert update_history(
        spark,
        path,
        spark.createDataFrame([("t", "a", "a@x.com", "CA", None, None, 2, day(1), day(2))], columns),
        day(3),
    ) == {"opened": 0, "closed": 0}


# --- generator data -----------------------------------------------------------------------------


def table(spark, lake, name):
    return spark.read.format("delta").load(lake.spark_path(name))


@pytest.fixture(scope="module")
def historic(identity_historic):
    return identity_historic


@pytest.fixture(scope="module")
def incremental(spark, curated_historic, dagster_instance):
    """The first day, then the second: the identity map before the second day, and the lake."""
    lake = copy_lake(curated_historic[0], "identity-incremental")
    assert run_assets(lake, dagster_instance, FIRST, FIRST, groups=IDENTITY_GROUPS).success
    before = table(spark, lake, MAP).select("tenant_id", "node_id", "cdp_customer_id").localCheckpoint()
    assert run_assets(lake, dagster_instance, LAST, LAST, groups=IDENTITY_GROUPS).success
    return lake, before


def test_accuracy_against_the_truth(spark, historic, capsys):
    lake, _ = historic
    accuracy = pair_accuracy(spark, lake, table(spark, lake, MAP))
    assert accuracy["pair_precision"] >= 0.99 and accuracy["pair_recall"] >= 0.95
    assert accuracy["persons"] > 0.9 * CONFIG.customers * len(CONFIG.tenants)  # nearly everyone appears in two days
    assert main(["identity", "accuracy", "--lake", lake.base_uri]) == 0
    printed = re.search(r"pair precision ([0-9.]+), pair recall ([0-9.]+)", capsys.readouterr().out)
    assert (float(printed[1]), float(printed[2])) == (
        round(accuracy["pair_precision"], 4),
        round(accuracy["pair_recall"], 4),
    )


def test_injected_shared_identifiers_are_excluded(spark, historic):
    lake, _ = historic
    injected = {
        (d["dirt"], d["value"])
        for tenant in CONFIG.tenants
        for obj in lake.list(f"truth/{tenant}/dirt/")
        for d in decode_ndjson_gz(lake.read_bytes(obj.key))
        if d["dirt"] in ("role_inbox", "store_inbox", "shared_device")
    }
    assert {kind for kind, _ in injected} == {"role_inbox", "store_inbox", "shared_device"}
    exclusions = table(spark, lake, EXCLUSIONS).collect()
    excluded = {r.id_value: r.kind for r in exclusions if r.kind != "limit"}
    gave_way = {value for r in exclusions if r.kind == "limit" for value in (r.id_value, r.other_value)}
    for kind, value in injected:
        if kind == "role_inbox":
            assert excluded.get(value) == "blocked", value
        else:  # shared by more people than the threshold, or by few enough that a limit stopped the merge
            assert excluded.get(value) == "shared" or value in gave_way, (kind, value)
    profiles = (
        table(spark, lake, MAP).groupBy("cdp_customer_id").agg(F.collect_set("id_value").alias("values")).collect()
    )
    assert not [p for p in profiles if len(p["values"]) > 1 and set(p["values"]) & {value for _, value in injected}]


def test_profiles_carry_the_truth(spark, historic):
    lake, result = historic
    persons = {
        (t, p["shopify_customer_id"]): p
        for t in CONFIG.tenants
        for p in decode_ndjson_gz(lake.read_bytes(f"truth/{t}/persons.ndjson.gz"))
        if p["shopify_customer_id"]
    }
    orders = {
        (r.tenant_id, r.customer_id): r["count"]
        for r in table(spark, lake, "curated/orders").groupBy("tenant_id", "customer_id").count().collect()
    }
    shop_ids = (
        table(spark, lake, MAP)
        .where("id_type = 'shopify_customer_id'")
        .select("tenant_id", "id_value", "cdp_customer_id")
    )
    profiles = table(spark, lake, PROFILES).join(shop_ids, ["tenant_id", "cdp_customer_id"]).collect()
    assert len(profiles) > 0.9 * len(persons)
    right = sum(
        1
        for p in profiles
        if p.orders == orders.get((p.tenant_id, int(p.id_value)), 0)
        and p.country == persons[(p.tenant_id, int(p.id_value))]["country"]
        and p.email == persons[(p.tenant_id, int(p.id_value))]["email"]
    )
    assert right / len(profiles) >= 0.97
    assert all(p.average_order_value_usd is None or p.orders > 0 for p in profiles)
    metadata = next(
        m for m in result.asset_materializations_for_node("identity_resolution") if m.asset_key == MAP_KEY
    ).metadata
    assert {"profiles", "largest_profile_identifiers", "merges_this_run", "excluded", "preview"} <= set(metadata)
    assert metadata["excluded"].value.get("shared", 0) > 0
    assert table(spark, lake, HISTORY).where("is_current").count() == table(spark, lake, PROFILES).count()


def test_a_new_day_keeps_every_id_and_records_merges(spark, incremental):
    lake, before = incremental
    after = table(spark, lake, MAP).select("tenant_id", "node_id", F.col("cdp_customer_id").alias("now"))
    changed = (
        before.join(after, ["tenant_id", "node_id"])
        .where("cdp_customer_id != now")
        .select("tenant_id", "cdp_customer_id", "now")
        .distinct()
    )
    merges = table(spark, lake, MERGES).where(F.col("as_of") == F.lit(LAST))
    unexplained = changed.join(
        merges.select("tenant_id", "cdp_customer_id", F.col("surviving_id").alias("now")),
        ["tenant_id", "cdp_customer_id", "now"],
        "left_anti",
    )
    assert unexplained.count() == 0
    lost = before.join(after, ["tenant_id", "node_id"], "left_anti")  # only identifiers the rules now exclude
    now_excluded = (
        table(spark, lake, EXCLUSIONS)
        .where("kind != 'limit'")
        .select("tenant_id", node_id(F.col("tenant_id"), F.col("id_type"), F.col("id_value")).alias("node_id"))
    )
    assert lost.join(now_excluded, ["tenant_id", "node_id"], "left_anti").count() == 0
    assert after.count() > before.count()  # the new day brought new identifiers


def test_historic_equals_incremental(spark, historic, incremental):
    (one, _), (other, _) = historic, incremental
    columns = ["tenant_id", "id_type", "id_value", "cdp_customer_id"]
    a, b = table(spark, one, MAP).select(*columns), table(spark, other, MAP).select(*columns)
    assert a.count() == b.count() > 0
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


def test_every_profile_is_a_person_an_anonymous_id_or_an_unowned_identifier(spark, lake_daily_run):
    """The demo's identity line says what the profiles are, and its counts add up against the truth:
    every anonymous id in the events that no person has is a profile of its own (visitors who never
    logged in, the kiosk browser), people split over two profiles are few, and the rest hold
    identifiers of no one person (the injected store and billing inboxes among them)."""
    lake = lake_daily_run["lake"]
    tenants = LAKE_DAILY_CONFIG.tenants
    identity_map = table(spark, lake, MAP)
    kinds = profile_kinds(spark, lake, identity_map)
    accuracy = pair_accuracy(spark, lake, identity_map)
    assert sum(kinds.values()) == accuracy["profiles"] == identity_map.select("cdp_customer_id").distinct().count()

    persons_anonymous = {
        (t, anonymous)
        for t in tenants
        for person in decode_ndjson_gz(lake.read_bytes(f"truth/{t}/persons.ndjson.gz"))
        for anonymous in person["anonymous_ids"]
    }
    events = table(spark, lake, "curated/events").where("anonymous_id IS NOT NULL")
    seen = {(r.tenant_id, r.anonymous_id) for r in events.select("tenant_id", "anonymous_id").distinct().collect()}
    assert kinds["anonymous"] == len(seen - persons_anonymous) > 0
    assert accuracy["persons"] <= kinds["people"] <= accuracy["persons"] * 1.05

    identity_line = accuracy_lines(lake)[0]
    assert identity_line.split(None, 1)[1].startswith(
        f"{accuracy['profiles']:,} profiles: {kinds['people']:,} of the {accuracy['persons']:,} people in the truth, "
        f"{kinds['anonymous']:,} anonymous"
    )
    assert f"{kinds['unowned']:,} of identifiers no one person has" in identity_line
