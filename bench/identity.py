"""Benchmark: identity resolution from 100k to 1M identifiers, against a plain Spark write of the
same edge list to Delta in the same run.

The graph is built from the sample generator's population (people with an email, phone and ids in
Shopify, Stripe, Salesforce and the app, anonymous ids), one record per source row as the
curated tables have them, with the identity dirt the generator injects (billing@ inboxes, a store
inbox on orders, a kiosk browser). Each size prints identifiers, edges, seconds for `resolve` (the
identity map written to Delta), seconds for the baseline, their ratio, and pair precision/recall
against the population.

    .venv/bin/python bench/identity.py                              # 100k, 300k, 1M identifiers
    .venv/bin/python bench/identity.py --sizes 50000                # quick
"""

import argparse
import random
import shutil
import time
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_identity.accuracy import pair_scores
from cdp_identity.resolve import resolve
from cdp_identity.sources import node_id
from cdp_resources.settings import state_dir
from cdp_resources.spark import get_spark_session
from cdp_sampledata.population import build_population

IDS_PER_PERSON = 5.85  # identifiers per person in the population (email, phone, system ids, anonymous ids)


def person_records(seed: int, customers: int) -> tuple[list[tuple], list[tuple]]:
    """(records as (record_no, seen_at, position, id_type, id_value), truth as (id_type, id_value, person_id))."""
    population = build_population(seed, "bench", customers, 30)
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    rows, truth, record = [], [], 0
    kiosk = "kiosk-0000-browser"

    def emit(seen: datetime, *ids: tuple[str, str]) -> None:
        nonlocal record
        record += 1
        rows.extend((record, seen, position, kind, value) for position, (kind, value) in enumerate(ids))

    for person in population.people:
        seen = start + timedelta(days=person.signup_day, seconds=rng.randrange(86_400))
        email, phone = ("email", person.email), ("phone", person.phone_e164)
        truth += [("email", person.email, person.person_id), ("phone", person.phone_e164, person.person_id)]
        if person.shopify_customer_id:
            shop = ("shopify_customer_id", str(person.shopify_customer_id))
            emit(seen, shop, email, phone)
            emit(seen + timedelta(days=1), shop, ("email", "instore@bench-shop.com") if rng.random() < 0.1 else email)
            truth.append((*shop, person.person_id))
        if person.stripe_customer_id:
            billing = f"billing@{person.company.domain}" if person.company and rng.random() < 0.25 else person.email
            emit(seen, ("stripe_customer_id", person.stripe_customer_id), ("email", billing), phone)
            truth.append(("stripe_customer_id", person.stripe_customer_id, person.person_id))
        if person.salesforce_contact_id:
            emit(seen, ("salesforce_contact_id", person.salesforce_contact_id), email, phone)
            truth.append(("salesforce_contact_id", person.salesforce_contact_id, person.person_id))
        if person.app_user_id:
            user = ("app_user_id", person.app_user_id)
            emit(seen, user, ("anonymous_id", person.anonymous_ids[0]), email, phone)
            for anonymous in person.anonymous_ids[1:]:
                emit(seen + timedelta(days=2), user, ("anonymous_id", anonymous))
            if rng.random() < 0.02:
                emit(seen + timedelta(days=3), user, ("anonymous_id", kiosk))
            truth += [user + (person.person_id,)] + [
                ("anonymous_id", a, person.person_id) for a in person.anonymous_ids
            ]
    return rows, truth


def graph(spark: SparkSession, rows: list[tuple]) -> tuple[DataFrame, DataFrame]:
    occurrences = (
        spark.createDataFrame(rows, "record long, seen_at timestamp, position int, id_type string, id_value string")
        .withColumn("tenant_id", F.lit("bench"))
        .withColumn("node_id", node_id(F.col("tenant_id"), F.col("id_type"), F.col("id_value")))
        .localCheckpoint()
    )
    nodes = (
        occurrences.groupBy("tenant_id", "node_id")
        .agg(
            F.first("id_type").alias("id_type"),
            F.first("id_value").alias("id_value"),
            F.min("seen_at").alias("first_seen"),
            F.max("seen_at").alias("last_seen"),
        )
        .localCheckpoint()
    )
    centres = occurrences.where("position = 0").select(
        "record", F.col("node_id").alias("src"), F.col("id_type").alias("src_type")
    )
    edges = (
        occurrences.where("position > 0")
        .join(centres, "record")
        .select("tenant_id", "src", F.col("node_id").alias("dst"), "src_type", F.col("id_type").alias("dst_type"))
        .distinct()
        .localCheckpoint()
    )
    return nodes, edges


def accuracy(spark: SparkSession, identity_map: DataFrame, truth: list[tuple]) -> tuple[float, float]:
    truth_frame = spark.createDataFrame(truth, "id_type string, id_value string, person_id string")
    points = identity_map.join(truth_frame, ["id_type", "id_value"]).cache()
    scores = pair_scores(points, "person_id")
    points.unpersist()
    return scores["pair_precision"], scores["pair_recall"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="identifier counts, comma-separated")
    args = parser.parse_args()
    root = state_dir() / "bench" / "identity"
    spark = get_spark_session()
    print(
        f"{'identifiers':>12} {'edges':>10} {'resolve s':>10} {'baseline s':>11} {'ratio':>6} {'precision':>10} {'recall':>7}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        shutil.rmtree(root, ignore_errors=True)
        rows, truth = person_records(42, int(size / IDS_PER_PERSON))
        nodes, edges = graph(spark, rows)
        identifiers, edge_count = nodes.count(), edges.count()

        started = time.perf_counter()
        edges.write.format("delta").save(str(root / "baseline"))
        baseline = time.perf_counter() - started

        started = time.perf_counter()
        result = resolve(spark, nodes, edges)
        result.identity_map.write.format("delta").save(str(root / "identity_map"))
        seconds = time.perf_counter() - started

        precision, recall = accuracy(spark, spark.read.format("delta").load(str(root / "identity_map")), truth)
        print(
            f"{identifiers:>12,} {edge_count:>10,} {seconds:>10.1f} {baseline:>11.1f} {seconds / baseline:>6.1f} "
            f"{precision:>10.4f} {recall:>7.4f}   rounds {result.rounds}",
            flush=True,
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
