"""Every tenant's predictions as of one day, from profile-level Spark frames: the features of the
cutoff and of the day, collected per tenant, fitted and scored by `model.predict_tenant`."""

import time
from datetime import date, timedelta

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp_predictions.features import history_days, snapshots
from cdp_predictions.model import SCORE_COLUMNS, Settings, TenantPrediction, predict_tenant


def predict(
    orders: DataFrame,
    events: DataFrame | None,
    attributes: DataFrame,
    as_of: date,
    settings: Settings,
    seconds: dict[str, float] | None = None,
) -> list[TenantPrediction]:
    """`orders` from `features.profile_orders`, `events` from `features.profile_events`,
    `attributes` the profiles; `seconds` (when given) gains the time of each stage."""
    seconds = {} if seconds is None else seconds
    started = time.perf_counter()
    _arrow(orders.sparkSession)
    buyers = snapshots(orders, events, attributes, as_of - timedelta(days=settings.horizon_days), as_of)
    histories = history_days(buyers.current)
    seconds["features"] = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    outcomes = []
    for tenant_id in sorted(histories):
        outcomes.append(
            predict_tenant(
                tenant_id,
                buyers.calibration[buyers.calibration.tenant_id == tenant_id].reset_index(drop=True),
                buyers.current[buyers.current.tenant_id == tenant_id].reset_index(drop=True),
                histories[tenant_id],
                settings,
            )
        )
    seconds["fit_and_score"] = time.perf_counter() - started
    # the driver's CPU time (every thread), which a machine shared with other work does not inflate
    seconds["fit_and_score_cpu"] = time.process_time() - cpu
    return outcomes


def _arrow(spark) -> None:
    """Buyers cross between Spark and pandas (one row each, millions for a large tenant) as Arrow
    batches, not pickled row by row."""
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")


def score_frame(spark, outcomes: list[TenantPrediction], as_of: date, run_id: str) -> DataFrame | None:
    """The publishable tenants' scores as one Spark frame (None when none is publishable)."""
    _arrow(spark)
    parts = [o.scores.assign(tenant_id=o.tenant_id) for o in outcomes if o.publishable]
    if not parts:
        return None
    frame = spark.createDataFrame(pd.concat(parts, ignore_index=True))
    return frame.select(
        "tenant_id",
        "cdp_customer_id",
        *(F.col(c).cast("double") for c in SCORE_COLUMNS),
        F.col("horizon_days").cast("int"),
        F.lit(as_of).alias("as_of_date"),
        F.lit(run_id).alias("_run_id"),
    )
