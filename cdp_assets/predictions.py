"""The predictions asset: each tenant's churn and CLV models fitted, measured and, when they pass
their quality gates, their scores published to the Delta table `predictions/customer_scores`
(one partition per as-of day).

The gates are two blocking asset checks of the asset itself (churn, CLV), thresholds in the run
config. A tenant whose model fails them publishes nothing: the table keeps its previous day's
scores, which the warehouse loads (its latest day per tenant), and the failed check stops the
run's downstream assets. A tenant with too little history gets no model and its reason in the
metadata; the checks pass for it (there is nothing wrong to publish).
"""

from datetime import date, timedelta

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pydantic import Field
from pyspark.sql import functions as F

from cdp_assets.keys import MAP_KEY, PREDICTIONS_KEY, PROFILES_KEY, curated_key
from cdp_predictions.features import profile_events, profile_orders
from cdp_predictions.model import SCORE_COLUMNS, Settings, TenantPrediction
from cdp_predictions.pipeline import predict, score_frame
from cdp_predictions.quality import Thresholds, markdown_table
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import MAP, PREDICTIONS, PROFILES
from cdp_resources.names import checked_name
from cdp_resources.previews import preview
from cdp_resources.spark import SparkDeltaResource
from cdp_transform.curated_store import read_curated
from partitions import daily_partitions

CHURN_CHECK, CLV_CHECK = "churn_quality", "clv_quality"
DEFAULTS, GATES = Settings(), Thresholds()


class PredictionsConfig(Config):
    """The time split and the quality gates (defaults in `cdp_predictions/model.py`, `quality.py`)."""

    horizon_days: int = Field(DEFAULTS.horizon_days, gt=0, description="N: churn is no order in the next N days.")
    min_buyers: int = Field(DEFAULTS.min_buyers, gt=0, description="Buyers before the held-out period a model needs.")
    min_history_days: int = Field(DEFAULTS.min_history_days, description="Days of orders a model needs (> N).")
    max_training_rows: int = Field(DEFAULTS.max_training_rows, gt=0)
    min_auc: float = GATES.min_auc
    max_brier: float = GATES.max_brier
    max_calibration_error: float = GATES.max_calibration_error
    min_top_decile_lift: float = GATES.min_top_decile_lift
    max_purchases_error: float = GATES.max_purchases_error

    def settings(self) -> Settings:
        if self.min_history_days <= self.horizon_days:
            raise ValueError(
                f"min_history_days ({self.min_history_days}) must exceed horizon_days ({self.horizon_days})"
            )
        thresholds = Thresholds(
            self.min_auc, self.max_brier, self.max_calibration_error, self.min_top_decile_lift, self.max_purchases_error
        )
        return Settings(self.horizon_days, self.min_buyers, self.min_history_days, self.max_training_rows, thresholds)


def _status(outcome: TenantPrediction) -> str:
    if outcome.reason:
        return f"no model: {outcome.reason}"
    if outcome.failures:
        return "not published (previous scores kept): " + "; ".join(outcome.failures)
    return f"published: {len(outcome.scores):,} buyers scored"


def _figures(outcome: TenantPrediction) -> dict:
    if outcome.reason:
        return {"status": _status(outcome)}
    churn = {k: v if isinstance(v, list) else round(v, 4) for k, v in outcome.churn.items()}
    purchases = {k: v for k, v in outcome.purchases.items() if k != "by_frequency"}
    return {
        "status": _status(outcome),
        "churn": churn,
        "clv_purchases": {k: round(v, 4) if isinstance(v, float) else v for k, v in purchases.items()},
        "bg_nbd": outcome.betageo.as_dict(),
        "gamma_gamma": outcome.gamma_gamma.as_dict(),
    }


def _check(name: str, outcomes: list[TenantPrediction], prefix: str) -> AssetCheckResult:
    failed = {o.tenant_id: [f for f in o.failures if f.startswith(prefix)] for o in outcomes}
    failed = {tenant: messages for tenant, messages in failed.items() if messages}
    return AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "failed": MetadataValue.json(failed),
            "modelled_tenants": sum(o.reason is None for o in outcomes),
            "tenants_without_model": MetadataValue.json({o.tenant_id: o.reason for o in outcomes if o.reason}),
        },
    )


def _tables(outcomes: list[TenantPrediction]) -> MetadataValue:
    """Per modelled tenant: the churn calibration plot's points and CLV's predicted against actual."""
    parts = []
    for o in outcomes:
        if o.reason:
            continue
        parts.append(
            f"### {o.tenant_id}\n\nChurn calibration on held-out buyers (predicted against observed churn rate per bin):\n\n"
            + markdown_table(o.calibration)
            + "\nCLV: predicted against actual purchase days in the held-out period, by repeat purchase days:\n\n"
            + markdown_table(o.purchases["by_frequency"], 1)
        )
    return MetadataValue.md("\n".join(parts) or "No tenant had enough history for a model.")


@multi_asset(
    specs=[
        AssetSpec(
            PREDICTIONS_KEY,
            group_name="predictions",
            owners=["team:data-science"],
            kinds={"spark", "delta", "scikitlearn"},
            deps=[MAP_KEY, PROFILES_KEY, curated_key("orders"), curated_key("events")],
            description=f"Per tenant and as of the run's last day, every buyer's churn probability (no order in the "
            "next N days; gradient-boosted classifier on a time split), probability of being alive, expected purchases, "
            "order value and value over 12 months (BG/NBD and Gamma-Gamma). Delta table "
            f"`{PREDICTIONS}`, partitioned by as_of_date; a tenant's scores are written only when its models pass the "
            "checks. See docs/predictions.md.",
            metadata={"table_path_in_lake": PREDICTIONS},
        )
    ],
    check_specs=[
        AssetCheckSpec(
            CHURN_CHECK,
            asset=PREDICTIONS_KEY,
            blocking=True,
            description="Each modelled tenant's churn model on held-out buyers: AUC, Brier score, calibration error "
            "and top-decile lift within the run config's thresholds.",
        ),
        AssetCheckSpec(
            CLV_CHECK,
            asset=PREDICTIONS_KEY,
            blocking=True,
            description="Each modelled tenant's BG/NBD model: predicted purchases of held-out buyers in the held-out "
            "period within the run config's relative error of the actual ones.",
        ),
    ],
    # Runs that select assets without their checks (tests, backfills of the graph) may leave the
    # gates out; the gates themselves still decide what is published.
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
)
def customer_scores(
    context: AssetExecutionContext, config: PredictionsConfig, lake: LakeResource, spark: SparkDeltaResource
):
    settings = config.settings()
    as_of = context.partition_time_window.end.date() - timedelta(days=1)
    session = spark.session_for(lake)
    identity_map, profiles = read_delta(session, lake, MAP), read_delta(session, lake, PROFILES)
    raw_orders = read_curated(session, lake, "orders", None, as_of)
    outcomes, seconds = [], {}
    if identity_map is not None and profiles is not None and raw_orders is not None:
        raw_events = read_curated(session, lake, "events", as_of - timedelta(days=settings.horizon_days + 30), as_of)
        events = profile_events(raw_events, identity_map) if raw_events is not None else None
        orders = profile_orders(raw_orders, identity_map)
        outcomes = predict(orders, events, profiles, as_of, settings, seconds)
    for outcome in outcomes:
        checked_name("tenant", outcome.tenant_id)
    published = _publish(session, lake, outcomes, as_of, context.run_id)
    yield MaterializeResult(
        asset_key=PREDICTIONS_KEY,
        metadata={
            "as_of": as_of.isoformat(),
            "published_tenants": MetadataValue.json(sorted(published)),
            "rows_published": sum(published.values()),
            "tenants": MetadataValue.json({o.tenant_id: _figures(o) for o in outcomes}),
            "quality": _tables(outcomes),
            "seconds": MetadataValue.json({k: round(v, 2) for k, v in seconds.items()}),
            "table_path": MetadataValue.path(lake.spark_path(PREDICTIONS)),
            **_preview(session, lake),
        },
        check_results=[
            _check(name, outcomes, prefix)
            for name, prefix in ((CHURN_CHECK, "churn"), (CLV_CHECK, "CLV"))
            if AssetCheckKey(PREDICTIONS_KEY, name) in context.selected_asset_check_keys
        ],
    )


def _publish(session, lake: LakeResource, outcomes: list[TenantPrediction], as_of: date, run_id: str) -> dict:
    """Replace (tenant, as_of) of every publishable tenant in one write; the table is created
    (empty) on the first run, so the warehouse always has a table to load."""
    frame = score_frame(session, outcomes, as_of, run_id)
    tenants = sorted(o.tenant_id for o in outcomes if o.publishable)
    path = lake.spark_path(PREDICTIONS)
    if frame is None:
        if not lake.is_delta_table(PREDICTIONS):
            empty = session.createDataFrame([], SCORES_SCHEMA)
            empty.write.format("delta").partitionBy("as_of_date").save(path)
        return {}
    condition = f"as_of_date = '{as_of}' AND tenant_id IN ({', '.join(repr(t) for t in tenants)})"
    frame.write.format("delta").mode("overwrite").partitionBy("as_of_date").option("replaceWhere", condition).save(path)
    counts = frame.groupBy("tenant_id").count().collect()
    return {row.tenant_id: row["count"] for row in counts}


SCORES_SCHEMA = ", ".join(
    ["tenant_id string", "cdp_customer_id string", *(f"{c} double" for c in SCORE_COLUMNS)]
    + ["horizon_days int", "as_of_date date", "_run_id string"]
)


def _preview(session, lake: LakeResource) -> dict:
    table = read_delta(session, lake, PREDICTIONS)
    if table is None:
        return {}
    return {
        "dagster/row_count": table.count(),
        "preview": preview(
            table.orderBy(F.col("as_of_date").desc()),
            ["tenant_id", "cdp_customer_id", "churn_probability", "expected_value_12m_usd", "as_of_date"],
        ),
    }


prediction_assets = [customer_scores]
