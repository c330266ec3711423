"""Churn propensity: the probability that a buyer places no order in the next N days, from a
gradient-boosted classifier (scikit-learn's HistGradientBoostingClassifier) over profile features.

Spark computes the features where the curated tables are; the learner runs on the driver on at
most `max_training_rows` customers (a random sample), which is what keeps it linear in profiles:
training cost is capped, scoring is one pass over the feature matrix. Why not Spark MLlib:
docs/predictions.md.
"""

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

NUMERIC = [
    "recency_days",
    "tenure_days",
    "orders",
    "order_days",
    "revenue_usd",
    "average_order_usd",
    "orders_30d",
    "orders_90d",
    "events_30d",
    "sessions_30d",
]
CATEGORICAL = ["preferred_channel", "country", "industry"]
FEATURES = NUMERIC + CATEGORICAL


def _matrix(features: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """The learner's input: numbers as floats, categories with the training set's levels (a level
    unseen in training is missing, which the learner handles)."""
    matrix = features[NUMERIC].astype(float)
    for column in CATEGORICAL:
        matrix[column] = pd.Categorical(features[column].fillna("unknown"), categories=categories[column])
    return matrix


class ChurnModel:
    """A classifier of "no order in the next N days", trained on one tenant's time split."""

    def __init__(self, seed: int = 0, max_training_rows: int = 200_000):
        self.seed, self.max_training_rows = seed, max_training_rows
        self.categories: dict[str, list[str]] = {}
        # Shallow trees and early stopping on a validation split: the few features need no depth,
        # and a model that stops before overfitting stays calibrated.
        self.learner = HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=10,
            categorical_features="from_dtype",
            random_state=seed,
        )

    def fit(self, features: pd.DataFrame, churned: np.ndarray) -> "ChurnModel":
        if len(features) > self.max_training_rows:
            keep = np.random.default_rng(self.seed).choice(len(features), self.max_training_rows, replace=False)
            features, churned = features.iloc[keep], churned[keep]
        self.categories = {c: sorted(features[c].fillna("unknown").unique()) for c in CATEGORICAL}
        self.learner.fit(_matrix(features, self.categories), churned.astype(int))
        return self

    def churn_probability(self, features: pd.DataFrame) -> np.ndarray:
        return self.learner.predict_proba(_matrix(features, self.categories))[:, 1]
