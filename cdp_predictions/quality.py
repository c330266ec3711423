"""How good a model is on data it did not see, and whether that is good enough to publish.

Churn: ROC AUC and Brier score (scikit-learn), expected calibration error and decile lift. CLV:
predicted against actual purchases in the held-out period, in total and per frequency. The gates
compare them with the thresholds of `PredictionSettings` (the asset's run config).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Thresholds:
    """What a tenant's model must reach on held-out data to be published."""

    min_auc: float = 0.7
    max_brier: float = 0.2
    max_calibration_error: float = 0.05
    min_top_decile_lift: float = 1.5
    # |predicted − actual| / actual purchases of the whole held-out period
    max_purchases_error: float = 0.2


def calibration_table(probability: np.ndarray, outcome: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Customers per equal-width bin of predicted probability, with the mean prediction and the
    observed rate: the calibration plot's points."""
    frame = pd.DataFrame({"predicted": probability, "observed": outcome.astype(float)})
    frame["bin"] = np.minimum((probability * bins).astype(int), bins - 1)
    table = frame.groupby("bin").agg(
        customers=("observed", "size"), predicted=("predicted", "mean"), observed=("observed", "mean")
    )
    return table.reset_index()


def expected_calibration_error(probability: np.ndarray, outcome: np.ndarray) -> float:
    """Σ over bins of (share of customers) × |mean prediction − observed rate|."""
    table = calibration_table(probability, outcome)
    return float((table.customers * (table.predicted - table.observed).abs()).sum() / table.customers.sum())


def decile_lift(probability: np.ndarray, outcome: np.ndarray) -> list[float]:
    """Observed rate in each tenth of customers by predicted probability (highest first), over the base rate."""
    order = np.argsort(-probability, kind="stable")
    base = outcome.mean()
    return [float(part.mean() / base) if base > 0 else 0.0 for part in np.array_split(outcome[order], 10)]


def churn_quality(probability: np.ndarray, outcome: np.ndarray) -> dict:
    """The churn model's figures on held-out customers; `probability` and `outcome` are of churning.
    Lift is of the rarer outcome, ordering again: with most buyers quiet in any N days, churn's own
    lift could not exceed 1 / churn rate."""
    lift = decile_lift(1 - probability, 1 - outcome.astype(float))
    return {
        "auc": float(roc_auc_score(outcome, probability)) if 0 < outcome.mean() < 1 else 0.5,
        "brier": float(brier_score_loss(outcome, probability)),
        "calibration_error": expected_calibration_error(probability, outcome),
        "top_decile_lift": lift[0],
        "decile_lift": [round(v, 3) for v in lift],
        "base_rate": float(outcome.mean()),
        "customers": int(len(outcome)),
    }


def purchases_quality(predicted: np.ndarray, actual: np.ndarray, frequency: np.ndarray) -> dict:
    """The CLV model's predicted purchases in the held-out period against the actual ones."""
    buckets = pd.cut(frequency, [-1, 0, 1, 2, 4, 8, np.inf], labels=["0", "1", "2", "3-4", "5-8", "9+"])
    table = (
        pd.DataFrame({"repeat_days": buckets, "predicted": predicted, "actual": actual})
        .groupby("repeat_days", observed=True)
        .agg(customers=("actual", "size"), predicted=("predicted", "sum"), actual=("actual", "sum"))
        .reset_index()
    )
    total_actual = float(actual.sum())
    return {
        "predicted_purchases": round(float(predicted.sum()), 1),
        "actual_purchases": total_actual,
        "purchases_error": abs(float(predicted.sum()) - total_actual) / total_actual if total_actual else float("inf"),
        "by_frequency": table,
    }


def failed_gates(churn: dict, purchases: dict, thresholds: Thresholds) -> list[str]:
    """Every threshold the figures miss, as a sentence (empty: publish)."""
    rules = [
        (churn["auc"] >= thresholds.min_auc, f"churn AUC {churn['auc']:.3f} < {thresholds.min_auc}"),
        (churn["brier"] <= thresholds.max_brier, f"churn Brier {churn['brier']:.3f} > {thresholds.max_brier}"),
        (
            churn["calibration_error"] <= thresholds.max_calibration_error,
            f"churn calibration error {churn['calibration_error']:.3f} > {thresholds.max_calibration_error}",
        ),
        (
            churn["top_decile_lift"] >= thresholds.min_top_decile_lift,
            f"churn top-decile lift (of ordering) {churn['top_decile_lift']:.2f} < {thresholds.min_top_decile_lift}",
        ),
        (
            purchases["purchases_error"] <= thresholds.max_purchases_error,
            f"CLV purchases error {purchases['purchases_error']:.3f} > {thresholds.max_purchases_error}",
        ),
    ]
    return [message for ok, message in rules if not ok]


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A small frame as a markdown table (Dagster's metadata renders it)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns) + "\n"
    cell = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)  # noqa: E731
    return header + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in frame.itertuples(index=False))
