"""Predictions on the generator's purchase behaviour, whose latent rates and dropouts are known:
the CLV model recovers the population, predicts held-out purchases, the churn model passes its
gates, a model made to fail (labels shuffled) fails them, a short history gets no model; and on
the pipeline: a failing check keeps the previous scores, which reach customer_360, the prediction
segments and their audiences."""

from collections import Counter
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from dagster import DagsterInstance
from pyspark.sql import functions as F

from cdp_activation.audiences import read_members
from cdp_assets.keys import PREDICTIONS_KEY
from cdp_assets.predictions import CHURN_CHECK, CLV_CHECK
from cdp_identity.sources import node_id
from cdp_predictions.clv import (
    expected_purchases,
    fit_betageo,
    fit_gamma_gamma,
)
from cdp_predictions.features import history_days, snapshots
from cdp_predictions.model import Settings, predict_tenant
from cdp_predictions.pipeline import predict
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import MAP, PREDICTIONS, PROFILES, curated_path
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz
from cdp_resources.warehouse import WarehouseResource
from cdp_sampledata.generator import GeneratorConfig, generate
from cdp_sampledata.population import build_population
from cdp_sampledata.purchases import PurchaseBehaviour, order_table, timeline, timelines
from tests.conftest import LAKE_DAILY_CONFIG, copy_database, copy_lake, run_assets

TRUTH = PurchaseBehaviour()
START = date(2025, 1, 1)


def _stats(lines, as_of_day: int, through: int) -> pd.DataFrame:
    """Per shopper who bought by the end of `as_of_day` (from day 0): BG/NBD's statistics then, and
    the purchase days in (as_of_day, through]."""
    rows = []
    for line in lines:
        days = sorted({day for day, _ in line.orders if day <= as_of_day})
        if days:
            values = [value for day, value in line.orders if day <= as_of_day]
            later = {day for day, _ in line.orders if as_of_day < day <= through}
            rows.append(
                (len(days) - 1, days[-1] - days[0], as_of_day - days[0], len(values), np.mean(values), len(later))
            )
    return pd.DataFrame(rows, columns=["frequency", "recency", "age", "orders", "average_order_usd", "later_days"])


@pytest.fixture(scope="module")
def shoppers():
    """20,000 shoppers who joined over 240 days, each on their own timeline."""
    rng = np.random.default_rng(3)
    return [timeline(5, "acme_corp", f"p{i}", int(rng.integers(0, 240)), 270, TRUTH) for i in range(20_000)]


def test_clv_model_recovers_the_generators_population(shoppers):
    """BG/NBD and Gamma-Gamma on 240 days of 20,000 shoppers: the population's mean purchase rate
    r/α and mean dropout a/(a+b) within 10 % of the truth, each parameter within 25 %, the mean order
    value within 5 %. The means are held tighter than the parameters because r and α (and a and b)
    trade off along a ridge of the likelihood, and the means are what the data pins down. 10 % and
    not less: counting purchase days (two orders on one day are one) and whole days of recency
    leaves r/α about 6 % low on every seed tried (0.93-0.95 of the truth on seeds 0-2)."""
    stats = _stats(shoppers, 239, 239)
    bgnbd = fit_betageo(stats.frequency, stats.recency, stats.age)
    assert bgnbd.r / bgnbd.alpha == pytest.approx(TRUTH.r / TRUTH.alpha, rel=0.10)
    assert bgnbd.a / (bgnbd.a + bgnbd.b) == pytest.approx(TRUTH.a / (TRUTH.a + TRUTH.b), rel=0.10)
    for fitted, true in ((bgnbd.r, TRUTH.r), (bgnbd.alpha, TRUTH.alpha), (bgnbd.a, TRUTH.a), (bgnbd.b, TRUTH.b)):
        assert fitted == pytest.approx(true, rel=0.25)
    spend = fit_gamma_gamma(stats.orders, stats.average_order_usd)
    true_mean = TRUTH.spend_p * TRUTH.spend_gamma / (TRUTH.spend_q - 1)
    assert spend.p * spend.gamma / (spend.q - 1) == pytest.approx(true_mean, rel=0.05)
    assert spend.p == pytest.approx(TRUTH.spend_p, rel=0.30)


def test_clv_model_predicts_the_held_out_period(shoppers):
    """Fitted on days 0-209, the expected purchase days of 210-239 are within 10 % of the actual
    ones in total and for buyers with no repeat purchase yet (the largest group)."""
    stats = _stats(shoppers, 209, 239)
    model = fit_betageo(stats.frequency, stats.recency, stats.age)
    predicted = expected_purchases(model, 30, stats.frequency, stats.recency, stats.age)
    actual = stats.later_days.to_numpy(float)
    assert actual.sum() > 1_000
    assert predicted.sum() == pytest.approx(actual.sum(), rel=0.10)
    one_timers = (stats.frequency == 0).to_numpy()
    assert predicted[one_timers].sum() == pytest.approx(actual[one_timers].sum(), rel=0.10)


@pytest.fixture(scope="module")
def history(spark):
    """One tenant's 240 days of generator purchases as Spark frames (a person stands for a profile)."""
    days = 240
    population = build_population(9, "acme_corp", 6_000, days)
    lines = timelines(population, days, TRUTH, 9)
    orders = spark.createDataFrame(order_table("acme_corp", lines, START))
    attributes = spark.createDataFrame(
        pd.DataFrame(
            {
                "tenant_id": "acme_corp",
                "cdp_customer_id": [p.person_id for p in population.people],
                "preferred_channel": ["shop" if p.shopify_customer_id else "app" for p in population.people],
                "country": [p.country for p in population.people],
                "industry": [p.company.industry if p.company else None for p in population.people],
                "first_seen": [pd.Timestamp(START + timedelta(days=p.signup_day)) for p in population.people],
            }
        )
    )
    return orders, attributes, START + timedelta(days=days - 1)


def test_models_on_generator_history_pass_their_gates(history):
    """The whole pipeline (Spark features, time split, both models) on 240 days: every gate passes,
    the figures are in range, every buyer is scored."""
    orders, attributes, as_of = history
    (outcome,) = predict(orders, None, attributes, as_of, Settings())
    assert outcome.reason is None and outcome.failures == [], outcome.failures
    assert outcome.churn["auc"] > 0.75 and outcome.churn["calibration_error"] < 0.05
    assert outcome.churn["decile_lift"][0] > 1.5 > outcome.churn["decile_lift"][-1]
    assert outcome.purchases["purchases_error"] < 0.15
    buyers = orders.where(orders.order_date <= as_of).select("cdp_customer_id").distinct().count()
    assert len(outcome.scores) == buyers
    assert outcome.scores.churn_probability.between(0, 1).all()
    assert (outcome.scores.expected_value_12m_usd >= 0).all()


def test_a_model_made_to_fail_fails_its_gates(history):
    """The churn labels shuffled among buyers: nothing left to learn, AUC ≈ 0.5, the gate says so."""
    orders, attributes, as_of = history
    buyers = snapshots(orders, None, attributes, as_of - timedelta(days=30), as_of)
    calibration = buyers.calibration.assign(
        churned=np.random.default_rng(0).permutation(buyers.calibration.churned.to_numpy())
    )
    outcome = predict_tenant(
        "acme_corp", calibration, buyers.current, history_days(buyers.current)["acme_corp"], Settings()
    )
    assert not outcome.publishable
    assert any(f.startswith("churn AUC") for f in outcome.failures), outcome.failures
    assert abs(outcome.churn["auc"] - 0.5) < 0.06


def test_too_little_history_gets_no_model_and_a_reason(history):
    orders, attributes, _ = history
    short = START + timedelta(days=40)
    (outcome,) = predict(orders, None, attributes, short, Settings())
    assert outcome.scores is None and not outcome.publishable
    assert outcome.reason.startswith("history of 40 days from the first order; a model needs 90")
    few = Settings(min_history_days=60, min_buyers=100_000)
    (outcome,) = predict(orders, None, attributes, START + timedelta(days=100), few)
    assert "buyers before the held-out period; a model needs 100000" in outcome.reason


def test_generator_orders_follow_the_purchase_truth(tmp_path):
    """With purchase behaviour, each day's Shopify orders are the truth's orders of that day (the
    order's total is the truth's value, converted to the buyer's currency); without it, there is no
    purchase truth and orders are drawn as before."""
    config = GeneratorConfig(tenants=("acme_corp",), days=6, customers=300, seed=3, purchases=PurchaseBehaviour(r=2.0))
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    generate(lake, config, workers=1, progress=False)
    truth = list(decode_ndjson_gz(lake.read_bytes("truth/acme_corp/purchases.ndjson.gz")))
    population = build_population(config.seed, "acme_corp", config.customers, config.days)
    assert len(truth) == sum(1 for p in population.people if p.shopify_customer_id)
    assert {"purchase_rate", "dropout_probability", "spend_scale", "dropout_day", "orders"} <= set(truth[0])
    by_day = Counter()
    for obj in lake.list("raw/acme_corp/shopify/orders/"):
        day = RAW_KEY.match(obj.key)
        by_day[date(int(day["year"]), int(day["month"]), int(day["day"]))] += sum(
            1 for _ in decode_ndjson_gz(lake.read_bytes(obj.key))
        )
    expected = Counter()
    for line in timelines(population, config.days, config.purchases, config.seed).values():
        for day, _ in line.orders:
            expected[config.start + timedelta(days=day)] += 1
    assert by_day == expected and sum(expected.values()) == sum(row["orders"] for row in truth) > 100
    plain = LakeResource(base_uri=str(tmp_path / "plain"))
    generate(plain, GeneratorConfig(tenants=("acme_corp",), days=2, customers=300, seed=3), workers=1, progress=False)
    assert not list(plain.list("truth/acme_corp/purchases"))


# The predictions asset on the lake tables it reads (curated orders, the identity map, profiles),
# written from 120 days of the generator's purchases: the curated zone's own tests cover how those
# tables are made, and a raw-to-curated run of 120 days would take minutes.
DAYS, FIRST_DAY = 120, date(2026, 1, 1)  # the daily partitions' first day
LAST = FIRST_DAY + timedelta(days=DAYS - 1)
# Gates any model passes (the models' quality is tested above, on more data): these tests are about
# what happens to scores that pass or fail.
LAX = {
    "horizon_days": 30,
    "min_buyers": 200,
    "min_history_days": 90,
    "min_auc": 0.0,
    "max_brier": 1.0,
    "max_calibration_error": 1.0,
    "min_top_decile_lift": 0.0,
    "max_purchases_error": 100.0,
}


def _config(**settings) -> dict:
    return {"ops": {"customer_scores": {"config": settings}}}


def _write_inputs(spark, lake: LakeResource) -> int:
    """curated/orders, identity/customer_ids and profiles/customer_profiles of one tenant's
    generated purchases; returns the number of buyers."""
    population = build_population(17, "acme_corp", 1_500, DAYS)
    lines = timelines(population, DAYS, TRUTH, 17)
    shop_ids = {p.person_id: p.shopify_customer_id for p in population.people if p.shopify_customer_id}
    table = order_table("acme_corp", lines, FIRST_DAY)
    table["customer_id"] = table.cdp_customer_id.map(shop_ids)
    orders = spark.createDataFrame(table.drop(columns="cdp_customer_id")).select(
        "tenant_id",
        F.col("order_date").alias("event_date"),
        F.col("order_date").cast("timestamp").alias("ordered_at"),
        F.lit(None).cast("string").alias("email"),
        "customer_id",
        "order_id",
        F.col("total_usd").cast("decimal(18,2)").alias("total_usd"),
    )
    orders.write.format("delta").partitionBy("event_date").save(lake.spark_path(curated_path("orders")))
    ids = spark.createDataFrame(pd.DataFrame({"cdp_customer_id": list(shop_ids), "shop_id": list(shop_ids.values())}))
    identity_map = ids.select(
        F.lit("acme_corp").alias("tenant_id"),
        node_id(F.lit("acme_corp"), F.lit("shopify_customer_id"), F.col("shop_id").cast("string")).alias("node_id"),
        "cdp_customer_id",
    )
    identity_map.write.format("delta").save(lake.spark_path(MAP))
    profiles = pd.DataFrame(
        {
            "tenant_id": "acme_corp",
            "cdp_customer_id": [p.person_id for p in population.people],
            "preferred_channel": "shop",
            "country": [p.country for p in population.people],
            "industry": [p.company.industry if p.company else None for p in population.people],
            "first_seen": [pd.Timestamp(FIRST_DAY + timedelta(days=p.signup_day)) for p in population.people],
        }
    )
    spark.createDataFrame(profiles).write.format("delta").save(lake.spark_path(PROFILES))
    return len({person for person, line in lines.items() if line.orders})


@pytest.fixture(scope="module")
def published(tmp_path_factory, dagster_instance, spark):
    """The predictions asset's run on the tables above, with gates it passes."""
    lake = LakeResource(base_uri=str(tmp_path_factory.mktemp("predictions") / "lake"))
    buyers = _write_inputs(spark, lake)
    result = run_assets(
        lake,
        dagster_instance,
        LAST,
        LAST,
        selection=["predictions/customer_scores"],
        checks=True,
        run_config=_config(**LAX),
    )
    assert result.success
    return lake, result, buyers


def test_published_scores_cover_every_buyer(published, spark):
    lake, result, buyers = published
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["published_tenants"].value == ["acme_corp"]
    assert "Churn calibration on held-out buyers" in metadata["quality"].value
    scores = spark.read.format("delta").load(lake.spark_path(PREDICTIONS))
    assert [r.as_of_date for r in scores.select("as_of_date").distinct().collect()] == [LAST]
    assert scores.count() == metadata["rows_published"].value == buyers
    checks = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert {(c.check_name, c.passed) for c in checks if c.asset_key == PREDICTIONS_KEY} == {
        (CHURN_CHECK, True),
        (CLV_CHECK, True),
    }


def test_a_failing_check_keeps_the_previous_scores(published, dagster_instance, spark):
    """The same day again with gates no model passes: both checks fail, nothing is written."""
    lake, _, _ = published
    path = lake.spark_path(PREDICTIONS)
    before = spark.read.format("delta").load(path).select("_run_id", "cdp_customer_id", "churn_probability")
    before = before.collect()
    strict = {**LAX, "min_auc": 0.999, "max_purchases_error": 0.0}
    result = run_assets(
        lake,
        dagster_instance,
        LAST,
        LAST,
        selection=["predictions/customer_scores"],
        checks=True,
        raise_on_error=False,
        run_config=_config(**strict),
    )
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not checks[CHURN_CHECK].passed and not checks[CLV_CHECK].passed
    assert "churn AUC" in str(checks[CHURN_CHECK].metadata["failed"].value)
    after = spark.read.format("delta").load(path).select("_run_id", "cdp_customer_id", "churn_probability").collect()
    assert sorted(after) == sorted(before)


@pytest.mark.slow
def test_prediction_segments_build_in_dbt_and_export_as_audiences(published, lake_daily_run, postgres, spark):
    """The published scores (a real model's, above) given to the whole `lake_daily` sample's
    profiles on copies of its lake and warehouse, the highest churn risk to the biggest spenders;
    the run from the warehouse load to the audiences puts them on customer_360 and in the
    prediction segments by their rules (written again here), exported like any other segment."""
    daily_lake = copy_lake(lake_daily_run["lake"], "prediction-segments")
    warehouse = WarehouseResource(url=copy_database(postgres, lake_daily_run["warehouse"].dsn(), "prediction_segments"))
    day = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)
    tenant = LAKE_DAILY_CONFIG.tenants[0]
    with psycopg.connect(warehouse.dsn()) as conn:
        revenue = conn.execute(
            "SELECT cdp_customer_id, lifetime_revenue_usd FROM marts.customer_360 WHERE tenant_id = %s "
            "ORDER BY lifetime_revenue_usd DESC, cdp_customer_id",
            (tenant,),
        ).fetchall()
    scores = spark.read.format("delta").load(published[0].spark_path(PREDICTIONS)).toPandas()
    scores = scores.sort_values(["churn_probability", "cdp_customer_id"], ascending=False).head(len(revenue))
    assert len(scores) == len(revenue)
    scores = scores.assign(tenant_id=tenant, cdp_customer_id=[c for c, _ in revenue], as_of_date=day)
    spark.createDataFrame(scores).write.format("delta").mode("overwrite").save(daily_lake.spark_path(PREDICTIONS))

    run = run_assets(
        daily_lake,
        DagsterInstance.ephemeral(),
        day,
        day,
        selection=[
            "warehouse/customer_predictions",
            "staging/stg_customer_predictions",
            "marts/customer_360",
            "segments/segment_predictions",
            "segments/segment_membership",
            "activation/audiences",
        ],
        warehouse=warehouse,
    )
    assert run.success

    scored = scores.set_index("cdp_customer_id").join(pd.Series(dict(revenue), name="revenue").astype(float))
    value_rank = scored.revenue.rank(method="min").sub(1).div(len(scored) - 1)
    predicted_rank = scored.expected_value_12m_usd.round(2).rank(method="min").sub(1).div(len(scored) - 1)
    expected = {
        "prediction_churn_risk_high_value": set(scored.index[(value_rank >= 0.8) & (scored.churn_probability >= 0.5)]),
        "prediction_high_value": set(scored.index[predicted_rank >= 0.8]),
    }
    with psycopg.connect(warehouse.dsn()) as conn:
        members = conn.execute(
            "SELECT segment, cdp_customer_id FROM segments.segment_membership "
            "WHERE tenant_id = %s AND as_of_date = %s AND segment LIKE 'prediction%%'",
            (tenant, day),
        ).fetchall()
        (on_360,) = conn.execute(
            "SELECT count(*) FROM marts.customer_360 WHERE tenant_id = %s AND churn_probability IS NOT NULL", (tenant,)
        ).fetchone()
    assert on_360 == len(scores)
    for segment, ids in expected.items():
        assert ids and {c for s, c in members if s == segment} == ids, segment
        exported = {
            c for part in read_members(daily_lake, tenant, segment, day) for c in part["cdp_customer_id"].to_pylist()
        }
        assert exported == ids, segment
