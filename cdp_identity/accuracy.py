"""How well identity resolution matches the generator's ground truth: pair precision and recall.

Every identifier that is both in the identity map and in the truth (`truth/{tenant}/persons`) is a
point; two points form a true pair when they belong to the same person, a predicted pair when they
share a cdp_customer_id. Precision = correct predicted pairs / predicted pairs, recall = correct
predicted pairs / true pairs. Counted with group sizes in Spark, never by listing pairs.
"""

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import decode_ndjson_gz

TRUTH_TYPES = {
    "email": "email",
    "phone": "phone_e164",
    "shopify_customer_id": "shopify_customer_id",
    "stripe_customer_id": "stripe_customer_id",
    "salesforce_contact_id": "salesforce_contact_id",
    "app_user_id": "app_user_id",
}


def truth_identifiers(spark: SparkSession, lake: LakeResource) -> DataFrame:
    """(tenant_id, id_type, id_value, person_id) for every identifier the generator gave a person."""
    rows = []
    for tenant in sorted(
        {obj.key.split("/")[1] for obj in lake.list("truth/") if obj.key.endswith("persons.ndjson.gz")}
    ):
        for person in decode_ndjson_gz(lake.read_bytes(f"truth/{tenant}/persons.ndjson.gz")):
            for id_type, field in TRUTH_TYPES.items():
                if person[field] is not None:
                    rows.append((tenant, id_type, str(person[field]), person["person_id"]))
            rows += [(tenant, "anonymous_id", anonymous, person["person_id"]) for anonymous in person["anonymous_ids"]]
    return spark.createDataFrame(rows, "tenant_id string, id_type string, id_value string, person_id string")


def _pairs(points: DataFrame, *group: str) -> int:
    sizes = points.groupBy(*group).count()
    return sizes.select(F.sum(F.col("count") * (F.col("count") - 1) / 2)).first()[0] or 0


def pair_scores(points: DataFrame, *person: str) -> dict[str, float]:
    """Pair counts, precision and recall of `points` (identifiers with their cdp_customer_id and the true
    person in the columns `person`)."""
    predicted, true = _pairs(points, "cdp_customer_id"), _pairs(points, *person)
    correct = _pairs(points, "cdp_customer_id", *person)
    return {
        "predicted_pairs": int(predicted),
        "true_pairs": int(true),
        "correct_pairs": int(correct),
        "pair_precision": correct / predicted if predicted else 1.0,
        "pair_recall": correct / true if true else 1.0,
    }


def profile_kinds(spark: SparkSession, lake: LakeResource, identity_map: DataFrame) -> dict[str, int]:
    """Profiles of `identity_map` by what the truth knows of them: `people` hold an identifier of a
    person in the truth; `anonymous` hold nothing but anonymous ids no person has (visitors whose
    sessions never logged in, and a kiosk browser several people share); `unowned` hold other
    identifiers no one person has (a store's inbox, a company's billing@ address: kept on their
    records, joined to no one)."""
    known = truth_identifiers(spark, lake).select("tenant_id", "id_type", "id_value", F.lit(True).alias("known"))
    profiles = (
        identity_map.join(known, ["tenant_id", "id_type", "id_value"], "left")
        .groupBy("cdp_customer_id")
        .agg(
            F.max(F.coalesce("known", F.lit(False))).alias("known"),
            F.min(F.col("id_type") == "anonymous_id").alias("only_anonymous"),
        )
    )
    kind = F.when(F.col("known"), "people").when(F.col("only_anonymous"), "anonymous").otherwise("unowned")
    counts = {row["kind"]: row["count"] for row in profiles.groupBy(kind.alias("kind")).count().collect()}
    return {name: counts.get(name, 0) for name in ("people", "anonymous", "unowned")}


def pair_accuracy(spark: SparkSession, lake: LakeResource, identity_map: DataFrame) -> dict[str, float]:
    """Pair precision and recall of `identity_map` against the truth in `lake`, with the counts behind them."""
    points = identity_map.join(truth_identifiers(spark, lake), ["tenant_id", "id_type", "id_value"]).cache()
    result = {
        "identifiers_evaluated": points.count(),
        **pair_scores(points, "tenant_id", "person_id"),
        "profiles": identity_map.select("cdp_customer_id").distinct().count(),
        "persons": points.select("tenant_id", "person_id").distinct().count(),
    }
    points.unpersist()
    return result
