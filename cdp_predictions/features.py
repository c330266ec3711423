"""Per-buyer features as of two days, computed in Spark from the curated orders and events and the
profiles in one aggregation each: the churn classifier's inputs and the CLV models' sufficient
statistics (frequency, recency and age in days, orders, average order value) as of the cutoff
(T − N) and as of T, and the purchase days in between (the held-out period's label). Only these
per-buyer rows reach the driver.
"""

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_identity.profiles import records_with_profile

KEY = ["tenant_id", "cdp_customer_id"]
AS_OF = {"cutoff": "_c", "now": "_t"}  # column suffixes of the two days


def profile_orders(orders: DataFrame, identity_map: DataFrame) -> DataFrame:
    """(tenant_id, cdp_customer_id, order_id, order_date, total_usd): each order once (curated
    keeps a row per order version and day), attributed to its buyer's profile."""
    linked = records_with_profile("orders", orders, identity_map, "order_id", "total_usd")
    return (
        linked.where(F.col("total_usd") > 0)
        .select(*KEY, "order_id", F.to_date("seen_at").alias("order_date"), "total_usd")
        .dropDuplicates(["tenant_id", "order_id"])
    )


def profile_events(events: DataFrame, identity_map: DataFrame) -> DataFrame:
    """(tenant_id, cdp_customer_id, event_date, anonymous_id) of the events attributed to a profile."""
    linked = records_with_profile("events", events, identity_map, "anonymous_id")
    return linked.select(*KEY, F.to_date("seen_at").alias("event_date"), "anonymous_id")


def _order_columns(day: date, suffix: str) -> list[Column]:
    when = F.col("order_date") <= F.lit(day)
    since = lambda days: when & (F.col("order_date") > F.lit(day - timedelta(days=days)))  # noqa: E731
    return [
        F.count(F.when(when, 1)).alias(f"orders{suffix}"),
        F.countDistinct(F.when(when, F.col("order_date"))).alias(f"order_days{suffix}"),
        F.sum(F.when(when, F.col("total_usd"))).cast("double").alias(f"revenue_usd{suffix}"),
        F.min(F.when(when, F.col("order_date"))).alias(f"first_order{suffix}"),
        F.max(F.when(when, F.col("order_date"))).alias(f"last_order{suffix}"),
        F.count(F.when(since(30), 1)).alias(f"orders_30d{suffix}"),
        F.count(F.when(since(90), 1)).alias(f"orders_90d{suffix}"),
    ]


def _event_columns(day: date, suffix: str) -> list[Column]:
    window = F.col("event_date").between(F.lit(day - timedelta(days=29)), F.lit(day))
    session = F.concat_ws("|", F.col("anonymous_id"), F.col("event_date").cast("string"))
    return [
        F.count(F.when(window, 1)).alias(f"events_30d{suffix}"),
        F.countDistinct(F.when(window, session)).alias(f"sessions_30d{suffix}"),
    ]


@dataclass
class Snapshots:
    """Buyers as of the cutoff (with `holdout_purchase_days` and `churned`) and as of T."""

    calibration: pd.DataFrame
    current: pd.DataFrame


def snapshots(
    orders: DataFrame, events: DataFrame | None, attributes: DataFrame, cutoff: date, as_of: date
) -> Snapshots:
    """Every buyer's features as of `cutoff` and `as_of`, from one aggregation of orders and one of events."""
    days = {"cutoff": cutoff, "now": as_of}
    in_holdout = (F.col("order_date") > F.lit(cutoff)) & (F.col("order_date") <= F.lit(as_of))
    per_buyer = (
        orders.where(F.col("order_date") <= F.lit(as_of))
        .groupBy(*KEY)
        .agg(
            *(c for name, suffix in AS_OF.items() for c in _order_columns(days[name], suffix)),
            F.countDistinct(F.when(in_holdout, F.col("order_date"))).alias("holdout_purchase_days"),
        )
    )
    if events is not None:
        activity = events.groupBy(*KEY).agg(
            *(c for name, suffix in AS_OF.items() for c in _event_columns(days[name], suffix))
        )
        per_buyer = per_buyer.join(activity, KEY, "left")
    profile = attributes.select(
        *KEY, "preferred_channel", "country", "industry", F.to_date("first_seen").alias("first_seen")
    )
    rows = per_buyer.join(profile, KEY, "left").toPandas()
    calibration = _features(rows, "_c", cutoff)
    calibration["holdout_purchase_days"] = rows.loc[calibration.index, "holdout_purchase_days"].astype(float)
    calibration["churned"] = calibration.holdout_purchase_days == 0
    return Snapshots(calibration.reset_index(drop=True), _features(rows, "_t", as_of).reset_index(drop=True))


def _days(later, earlier) -> pd.Series:
    return (pd.to_datetime(later) - pd.to_datetime(earlier)).dt.days.astype(float)


def _features(rows: pd.DataFrame, suffix: str, day: date) -> pd.DataFrame:
    """The buyers as of `day` (an order by then) with their features under plain names."""
    rows = rows[rows[f"orders{suffix}"] > 0]
    value = lambda name: rows.get(f"{name}{suffix}", 0)  # noqa: E731  (no events: zero activity)
    first, last, today = rows[f"first_order{suffix}"], rows[f"last_order{suffix}"], pd.Series(day, index=rows.index)
    age = _days(today, first)
    frame = pd.DataFrame(
        {
            "tenant_id": rows.tenant_id,
            "cdp_customer_id": rows.cdp_customer_id,
            "orders": value("orders").astype(float),
            "order_days": value("order_days").astype(float),
            "revenue_usd": value("revenue_usd").astype(float),
            "orders_30d": value("orders_30d").astype(float),
            "orders_90d": value("orders_90d").astype(float),
            # BG/NBD's statistics count purchase days: x repeat days, t_x and T from the first one
            "frequency": value("order_days").astype(float) - 1,
            "recency": _days(last, first),
            "age": age,
            "recency_days": _days(today, last),
            "tenure_days": np.maximum(age, _days(today, rows.first_seen).fillna(0)),
            "events_30d": pd.Series(value("events_30d"), index=rows.index).fillna(0).astype(float),
            "sessions_30d": pd.Series(value("sessions_30d"), index=rows.index).fillna(0).astype(float),
            "preferred_channel": rows.preferred_channel,
            "country": rows.country,
            "industry": rows.industry,
        },
        index=rows.index,
    )
    frame["average_order_usd"] = frame.revenue_usd / frame.orders
    return frame


def history_days(current: pd.DataFrame) -> dict[str, int]:
    """Per tenant: days from its first order to T (the oldest buyer's age as of T)."""
    return {tenant: int(days) for tenant, days in current.groupby("tenant_id").age.max().items()}
