"""One tenant's predictions as of day T: eligibility, fitting on a time split, evaluation on held-out
customers and the held-out period, and the scores of every buyer.

The time split: features and purchase statistics as of T − N (the cutoff) are the training data;
what each buyer did in (T − N, T] is the label (churn: no order) and the CLV model's target
(purchase days). A fixed fifth of the buyers (by a hash of their id) is held out of the churn
model's training; both models are measured on them. The models that passed are then applied to
everyone's features as of T, and predict the next N days (churn) and 12 months (CLV).
"""

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cdp_predictions.churn import ChurnModel
from cdp_predictions.clv import (
    BetaGeo,
    FitError,
    GammaGamma,
    expected_order_value,
    expected_purchases,
    fit_betageo,
    fit_gamma_gamma,
    probability_alive,
)
from cdp_predictions.quality import Thresholds, calibration_table, churn_quality, failed_gates, purchases_quality

YEAR_DAYS = 365
HELD_OUT_SHARE = 5  # one customer in five
SCORE_COLUMNS = [
    "churn_probability",
    "purchase_probability",
    "probability_alive",
    "expected_purchases_12m",
    "expected_order_value_usd",
    "expected_value_12m_usd",
]


@dataclass(frozen=True)
class Settings:
    horizon_days: int = 30  # N: churn means no order in the next N days; also the held-out period
    min_buyers: int = 500  # buyers as of the cutoff a tenant needs for a model
    min_history_days: int = 90  # days from the tenant's first order to T
    max_training_rows: int = 200_000
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass
class TenantPrediction:
    """A tenant's outcome: `reason` when it got no model, else the figures, the failed gates
    (empty: publish) and the scores."""

    tenant_id: str
    reason: str | None = None
    betageo: BetaGeo | None = None
    gamma_gamma: GammaGamma | None = None
    churn: dict | None = None
    purchases: dict | None = None
    calibration: pd.DataFrame | None = None  # the churn calibration plot's points (held-out buyers)
    failures: list[str] = field(default_factory=list)
    scores: pd.DataFrame | None = None

    @property
    def publishable(self) -> bool:
        return self.reason is None and not self.failures


def held_out(customer_ids: pd.Series) -> np.ndarray:
    """The same fifth of customers on every run (crc32 of the id), so figures compare across days."""
    return np.array([zlib.crc32(c.encode()) % HELD_OUT_SHARE == 0 for c in customer_ids])


def ineligible(calibration: pd.DataFrame, history_days: int, settings: Settings) -> str | None:
    """Why a tenant gets no model (None: it gets one)."""
    if history_days < settings.min_history_days:
        return (
            f"history of {history_days} days from the first order; a model needs {settings.min_history_days} "
            f"(the {settings.horizon_days}-day held-out period and a calibration period before it)"
        )
    if len(calibration) < settings.min_buyers:
        return f"{len(calibration)} buyers before the held-out period; a model needs {settings.min_buyers}"
    churn_rate = calibration.churned.mean()
    if churn_rate in (0.0, 1.0):
        return f"every buyer {'churned' if churn_rate else 'ordered again'} in the held-out period: nothing to learn"
    return None


def predict_tenant(
    tenant_id: str,
    calibration: pd.DataFrame,
    current: pd.DataFrame,
    history_days: int,
    settings: Settings,
    seed: int = 0,
) -> TenantPrediction:
    """`calibration`: buyers' features as of the cutoff with `churned` and `holdout_purchase_days`;
    `current`: buyers' features as of T. Columns: cdp_customer_id, the churn features
    (`churn.FEATURES`), frequency, recency, age (days), orders, average_order_usd."""
    outcome = TenantPrediction(tenant_id, reason=ineligible(calibration, history_days, settings))
    if outcome.reason:
        return outcome
    test = held_out(calibration.cdp_customer_id)
    churned = calibration.churned.to_numpy(bool)
    try:
        outcome.betageo = fit_betageo(calibration.frequency, calibration.recency, calibration.age)
        outcome.gamma_gamma = fit_gamma_gamma(current.orders, current.average_order_usd)
    except FitError as error:
        outcome.reason = str(error)
        return outcome
    model = ChurnModel(seed, settings.max_training_rows).fit(calibration[~test], churned[~test])
    held = calibration[test]
    probability = model.churn_probability(held)
    outcome.churn = churn_quality(probability, churned[test])
    outcome.calibration = calibration_table(probability, churned[test])
    predicted = expected_purchases(outcome.betageo, settings.horizon_days, held.frequency, held.recency, held.age)
    outcome.purchases = purchases_quality(predicted, held.holdout_purchase_days.to_numpy(float), held.frequency)
    outcome.failures = failed_gates(outcome.churn, outcome.purchases, settings.thresholds)
    outcome.scores = scores(current, model, outcome.betageo, outcome.gamma_gamma, settings.horizon_days)
    return outcome


def scores(
    current: pd.DataFrame, model: ChurnModel, betageo: BetaGeo, gamma_gamma: GammaGamma, horizon_days: int
) -> pd.DataFrame:
    """Every buyer's predictions as of T."""
    x, t_x, age = current.frequency, current.recency, current.age
    purchases = expected_purchases(betageo, YEAR_DAYS, x, t_x, age)
    order_value = expected_order_value(gamma_gamma, current.orders, current.average_order_usd)
    churn = model.churn_probability(current)
    return pd.DataFrame(
        {
            "cdp_customer_id": current.cdp_customer_id.to_numpy(),
            "churn_probability": churn,
            "purchase_probability": 1 - churn,
            "probability_alive": probability_alive(betageo, x, t_x, age),
            "expected_purchases_12m": purchases,
            "expected_order_value_usd": order_value,
            "expected_value_12m_usd": purchases * order_value,
            "horizon_days": horizon_days,
        }
    )
