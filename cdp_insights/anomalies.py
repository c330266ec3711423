"""Anomalies in the daily metrics: a weekday-seasonal robust score, and each finding explained by
how much of its gap every dimension's members account for.

Why median and MAD rather than forecasting intervals (statsforecast): the platform must judge a
tenant's day from a few weeks of history; a median-based baseline is usable from two weeks on, an
outlier day in the history (last week's incident) does not move it, and it needs no model fitting
or heavy dependency.

The score works on log(1 + value), because the metrics' noise is multiplicative: a day's revenue
is a few large orders more or less, so its spread grows with its level and is skewed upwards;
on the log scale a shop's +60 % day and its −40 % day are equally unusual, and the expected range
comes out asymmetric, as it should. On that scale, for the `HISTORY_DAYS` days before the day:

- the weekday pattern is an offset per weekday (median of that weekday minus the overall median),
  tried once three weeks of history give each weekday three values, and kept only when it makes
  the residuals smaller (each day's residual taken with its weekday's offset computed without it);
- the level follows the deseasonalised history's robust trend (Theil–Sen: the median of pairwise
  slopes) extrapolated to the day, so a growing business is no anomaly;
- the scale is 1.4826 × the MAD around that trend, floored: at `MIN_RELATIVE_SCALE` (a metric
  that never moved does not flag a 1 % wobble) and, for counts, at a Poisson count's spread;
- score = (log actual − log expected) / scale; a finding needs |score| ≥ `THRESHOLD` and a
  relative deviation of at least `MIN_RELATIVE`.

The explanation: each member of each dimension (country = DE, channel = shop, or a pair of them)
is scored on its own series the same way; a member's share of the gap against its share of the
expected value says how concentrated the gap is there. The slice named is the one whose share
of the gap most exceeds its usual share; a gap spread evenly is called so.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from statistics import median

HISTORY_DAYS = 28
MIN_HISTORY_DAYS = 14
SEASONAL_MIN_DAYS = 21
THRESHOLD = 5.0
MIN_RELATIVE = 0.15
MIN_RELATIVE_SCALE = 0.03
HIGH_SEVERITY_SCORE = 2 * THRESHOLD
# A slice is named when its share of the gap exceeds its usual share by this much.
MIN_EXCESS_SHARE = 0.15
TOTAL = ("total", "all")


@dataclass(frozen=True)
class Baseline:
    expected: float
    low: float
    high: float
    log_expected: float
    log_scale: float

    def score(self, actual: float) -> float:
        return (math.log1p(max(actual, 0.0)) - self.log_expected) / self.log_scale


@dataclass(frozen=True)
class Contribution:
    dimension: str
    member: str
    gap: float
    share: float  # of the total gap
    expected_share: float  # of the total's expected value

    @property
    def excess(self) -> float:
        return self.share - self.expected_share


@dataclass(frozen=True)
class Finding:
    tenant_id: str
    metric: str
    day: date
    actual: float
    expected: float
    low: float
    high: float
    score: float
    direction: str
    severity: str
    explanation: str
    contributors: list[Contribution] = field(default_factory=list)


def _theil_sen(values: list[float]) -> float:
    """The median of the pairwise slopes: a trend that a few outlier days do not bend."""
    return median((values[j] - values[i]) / (j - i) for i in range(len(values)) for j in range(i + 1, len(values)))


def _weekday_offsets(days: list[date], logs: list[float]) -> tuple[dict[int, float], list[float]] | None:
    """Per weekday, the median of its values minus the overall median; and per day, its weekday's
    offset computed without that day. None with fewer than `SEASONAL_MIN_DAYS` days."""
    if len(days) < SEASONAL_MIN_DAYS:
        return None
    overall = median(logs)
    by_weekday = defaultdict(list)
    for i, d in enumerate(days):
        by_weekday[d.weekday()].append(i)
    offsets = {w: median(logs[i] for i in indexes) - overall for w, indexes in by_weekday.items()}
    held_out = [median(logs[j] for j in by_weekday[d.weekday()] if j != i) - overall for i, d in enumerate(days)]
    return offsets, held_out


def _fit(logs: list[float], offsets: list[float], held_out: list[float]) -> tuple[float, float, float]:
    """(slope, intercept, MAD): the trend of the history less its weekday offsets, and the spread
    of the residuals where each day's offset was computed without it. With three or four values a
    weekday, offsets fitted on the very days they are judged on absorb those days' noise, and the
    spread would come out too small: ordinary days would look anomalous."""
    adjusted = [y - o for y, o in zip(logs, offsets, strict=True)]
    slope = _theil_sen(adjusted)
    intercept = median(y - slope * i for i, y in enumerate(adjusted))
    mad = median(abs(y - h - intercept - slope * i) for i, (y, h) in enumerate(zip(logs, held_out, strict=True)))
    return slope, intercept, mad


def baseline(history: Mapping[date, float], day: date, count: bool = False) -> Baseline | None:
    """The expected value and range for `day` from the `HISTORY_DAYS` days before it (days missing
    from `history` count as 0: the metrics are counts and sums); None with fewer than
    `MIN_HISTORY_DAYS` days since the series began. A `count` is given at least a Poisson count's
    spread: a MAD of a few steady small counts would otherwise call any change anomalous."""
    known = [d for d in history if d < day]
    if not known:
        return None
    first = max(min(known), day - timedelta(days=HISTORY_DAYS))
    days = [first + timedelta(days=i) for i in range((day - first).days)]
    if len(days) < MIN_HISTORY_DAYS:
        return None
    logs = [math.log1p(max(float(history.get(d, 0.0)), 0.0)) for d in days]
    none = [0.0] * len(days)
    slope, intercept, mad = _fit(logs, none, none)
    weekday_offset = 0.0
    seasonal = _weekday_offsets(days, logs)
    if seasonal is not None:
        offsets, held_out = seasonal
        fitted = _fit(logs, [offsets[d.weekday()] for d in days], held_out)
        # A weekday pattern only when it explains the history better than none does.
        if fitted[2] < mad:
            (slope, intercept, mad), weekday_offset = fitted, offsets[day.weekday()]
    log_expected = intercept + slope * len(days) + weekday_offset
    expected = math.expm1(log_expected)
    # A Poisson count of mean m has a spread of about 1/sqrt(m) on the log scale.
    poisson = 1 / math.sqrt(expected) if count and expected > 0 else 0.0
    scale = max(1.4826 * mad, MIN_RELATIVE_SCALE, poisson)
    return Baseline(
        expected=expected,
        low=max(math.expm1(log_expected - THRESHOLD * scale), 0.0),
        high=math.expm1(log_expected + THRESHOLD * scale),
        log_expected=log_expected,
        log_scale=scale,
    )


def _series(rows: Iterable[Mapping]) -> dict[tuple, dict[date, float]]:
    """(tenant, metric, dimension, member) -> {day: value} from rows of the daily metrics."""
    series: dict[tuple, dict[date, float]] = defaultdict(dict)
    for row in rows:
        series[(row["tenant_id"], row["metric"], row["dimension"], row["member"])][row["day"]] = float(row["value"])
    return series


def _contributions(
    series: Mapping[tuple, Mapping[date, float]], total: tuple, day: date, gap: float, expected: float, count: bool
) -> list[Contribution]:
    """Each dimension member's own gap against its own baseline, as a share of the total's gap,
    with its share of the total's expected value; most concentrated first."""
    found = []
    for (tenant, metric, dimension, member), history in series.items():
        if (tenant, metric) != total[:2] or (dimension, member) == TOTAL:
            continue
        own = baseline(history, day, count)
        if own is None:
            continue
        member_gap = history.get(day, 0.0) - own.expected
        usual_share = own.expected / expected if expected else 0.0  # a total usually at zero: so is each member
        found.append(Contribution(dimension, member, member_gap, member_gap / gap, usual_share))
    return sorted(found, key=lambda c: -c.excess)


def _slice(contribution: Contribution) -> str:
    pairs = zip(contribution.dimension.split(","), contribution.member.split(","), strict=True)
    return ", ".join(f"{dimension} = {member}" for dimension, member in pairs)


def _explain(metric: str, actual: float, expected: Baseline, contributors: list[Contribution]) -> str:
    relative = (actual - expected.expected) / expected.expected if expected.expected else math.inf
    text = (
        f"{metric} {abs(relative):.0%} {'under' if relative < 0 else 'over'} its expected value "
        f"(expected range {expected.low:,.2f}–{expected.high:,.2f}, actual {actual:,.2f})"
    )
    if not contributors:
        return text
    top = contributors[0]
    if top.excess < MIN_EXCESS_SHARE:
        return f"{text}; the gap is spread over every dimension's members in their usual shares"
    return f"{text}; {min(top.share, 1.0):.0%} of the gap comes from {_slice(top)} (usually {top.expected_share:.0%} of {metric})"


def detect(rows: Iterable[Mapping], days: Iterable[date], additive: set[str], counts: set[str]) -> list[Finding]:
    """Findings on `days` for every tenant's metric totals in `rows` (dicts with tenant_id, metric,
    dimension, member, day, value; totals have dimension "total", member "all"). Metrics in
    `additive` are explained by their members' contributions (ratios do not add up, so they are
    not); metrics in `counts` get the Poisson floor on their spread."""
    series = _series(rows)
    findings = []
    for key, history in sorted(series.items(), key=lambda item: str(item[0])):
        tenant, metric, dimension, member = key
        if (dimension, member) != TOTAL:
            continue
        for day in days:
            expected = baseline(history, day, metric in counts)
            if expected is None:
                continue
            actual = history.get(day, 0.0)
            score = expected.score(actual)
            relative = abs(actual - expected.expected) / expected.expected if expected.expected else math.inf
            if abs(score) < THRESHOLD or relative < MIN_RELATIVE:
                continue
            gap = actual - expected.expected
            contributors = (
                _contributions(series, key, day, gap, expected.expected, metric in counts) if metric in additive else []
            )
            findings.append(
                Finding(
                    tenant_id=tenant,
                    metric=metric,
                    day=day,
                    actual=actual,
                    expected=expected.expected,
                    low=expected.low,
                    high=expected.high,
                    score=score,
                    direction="down" if gap < 0 else "up",
                    severity="high" if abs(score) >= HIGH_SEVERITY_SCORE else "medium",
                    explanation=_explain(metric, actual, expected, contributors),
                    contributors=contributors[:5],
                )
            )
    return findings
