"""Customer lifetime value: BG/NBD (who is still a customer, how often they will buy) and
Gamma-Gamma (how much an order of theirs is worth), fitted by maximum likelihood.

The likelihoods and conditional expectations are the published ones (Fader, Hardie and Lee 2005,
"Counting your customers the easy way"; Fader and Hardie 2013, "The Gamma-Gamma model of monetary
value"), on each customer's sufficient statistics: frequency x (repeat purchase days), recency t_x
and age T in days, and for spend the number of orders and their mean value. Customers with equal
statistics add the same term to the likelihood, so the fit runs on the distinct tuples weighted by
how many customers share them: its cost grows with the number of distinct tuples (bounded by the
history's length), not with the number of customers. Why not pymc-marketing: docs/predictions.md.
"""

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

# Bounds on the log of every parameter: wide enough for any retail population (rates of one
# order a decade to several a day), narrow enough that the optimiser never leaves floating point.
_LOG_BOUNDS = (-8.0, 8.0)


class FitError(RuntimeError):
    """The optimiser did not converge: no model, rather than a wrong one."""


@dataclass(frozen=True)
class BetaGeo:
    """BG/NBD population: purchase rate λ ~ Gamma(r, alpha) per day, dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class GammaGamma:
    """Spend per order ~ Gamma(p, ν), with ν ~ Gamma(q, gamma) across customers."""

    p: float
    q: float
    gamma: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def _grouped(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.groupby(columns, sort=False).size().rename("weight").reset_index()


def _fit(neg_log_likelihood, start: np.ndarray) -> np.ndarray:
    result = optimize.minimize(neg_log_likelihood, np.log(start), method="L-BFGS-B", bounds=[_LOG_BOUNDS] * len(start))
    if not result.success or not np.isfinite(result.fun):
        raise FitError(f"maximum likelihood did not converge: {result.message}")
    return np.exp(result.x)


class _Tuples:
    """Distinct (x, t_x, T) with their weights, and each column's distinct values with the index of
    every tuple's value in them: the special functions run on the few distinct values (x has tens,
    t_x and T at most the history's days), not on every tuple."""

    def __init__(self, frequency, recency, age):
        stats = _grouped(pd.DataFrame({"x": frequency, "t_x": recency, "age": age}), ["x", "t_x", "age"])
        self.weight = stats.weight.to_numpy(float)
        self.x_values, self.x_index = np.unique(stats.x.to_numpy(float), return_inverse=True)
        self.t_x_values, self.t_x_index = np.unique(stats.t_x.to_numpy(float), return_inverse=True)
        self.age_values, self.age_index = np.unique(stats.age.to_numpy(float), return_inverse=True)
        self.x = self.x_values[self.x_index]

    def log_likelihood(self, params) -> float:
        """Σ weight × log L(r, α, a, b | x, t_x, T) / Σ weight (Fader, Hardie and Lee 2005, eq. 6)."""
        r, alpha, a, b = params
        xs = self.x_values
        by_x = (
            special.gammaln(r + xs)
            - special.gammaln(r)
            + r * np.log(alpha)
            + special.betaln(a, b + xs)
            - special.betaln(a, b)
        )
        gone_odds = np.where(xs > 0, np.log(a) - np.log(np.maximum(b + xs - 1, 1e-12)), -np.inf)
        power = r + self.x
        still_alive = -power * np.log(alpha + self.age_values)[self.age_index]
        # a repeat buyer may also have left right after their last purchase
        gone = gone_odds[self.x_index] - power * np.log(alpha + self.t_x_values)[self.t_x_index]
        terms = by_x[self.x_index] + np.logaddexp(still_alive, gone)
        return float((self.weight * terms).sum() / self.weight.sum())


def fit_betageo(frequency, recency, age) -> BetaGeo:
    """Maximum-likelihood BG/NBD on per-customer (x, t_x, T) in days."""
    tuples = _Tuples(frequency, recency, age)
    start = np.array([1.0, max(float(np.mean(age)), 1.0), 1.0, 1.0])
    return BetaGeo(*_fit(lambda log_params: -tuples.log_likelihood(np.exp(log_params)), start))


def _alive_odds(model: BetaGeo, x, t_x, age):
    """1 + δ(x>0)·a/(b+x−1)·((α+T)/(α+t_x))^(r+x): the denominator of P(alive) and E[Y(t)]."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) + (r + x) * np.log((alpha + age) / (alpha + t_x))
    return 1 + np.where(x > 0, np.exp(np.minimum(log_ratio, 700)), 0.0)


def probability_alive(model: BetaGeo, x, t_x, age) -> np.ndarray:
    return 1 / _alive_odds(model, np.asarray(x, float), np.asarray(t_x, float), np.asarray(age, float))


def expected_purchases(model: BetaGeo, days: float, x, t_x, age) -> np.ndarray:
    """E[purchases in (T, T+days] | x, t_x, T] (Fader, Hardie and Lee 2005, eq. 10)."""
    x, t_x, age = (np.asarray(v, float) for v in (x, t_x, age))
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    if a <= 1:  # the closed form needs a > 1; a ≤ 1 means a heavy tail of loyal customers
        a = 1 + 1e-6
    hyper = special.hyp2f1(r + x, b + x, a + b + x - 1, days / (alpha + age + days))
    top = 1 - ((alpha + age) / (alpha + age + days)) ** (r + x) * hyper
    return (a + b + x - 1) / (a - 1) * top / _alive_odds(model, x, t_x, age)


def fit_gamma_gamma(orders, mean_value) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on per-customer order counts and mean order values (> 0)."""
    frame = pd.DataFrame({"n": np.asarray(orders, float), "m": np.asarray(mean_value, float)})
    frame = frame[(frame.n > 0) & (frame.m > 0)]
    counts, count_index = np.unique(frame.n.to_numpy(), return_inverse=True)
    n, m = frame.n.to_numpy(), frame.m.to_numpy()
    log_m, log_counts = np.log(m), np.log(counts)

    def objective(log_params):
        p, q, gamma = np.exp(log_params)
        pn = p * counts  # the terms of n alone, on its few distinct values
        by_count = special.gammaln(pn + q) - special.gammaln(pn) - special.gammaln(q) + pn * log_counts
        log_likelihood = (
            by_count[count_index] + q * np.log(gamma) + (p * n - 1) * log_m - (p * n + q) * np.log(gamma + m * n)
        )
        return -log_likelihood.mean()

    return GammaGamma(*_fit(objective, np.array([1.0, 2.0, max(float(np.mean(m)), 1.0)])))


def expected_order_value(model: GammaGamma, orders, mean_value) -> np.ndarray:
    """E[value of a future order | n orders of mean value m]: the customer's mean shrunk toward
    the population's, less so the more orders they made."""
    n, m = np.asarray(orders, float), np.asarray(mean_value, float)
    p, q, gamma = model.p, model.q, model.gamma
    population_mean = p * gamma / (q - 1) if q > 1 else np.nan
    shrunk = p * (gamma + n * m) / (p * n + q - 1)
    return np.where(n > 0, shrunk, population_mean)
