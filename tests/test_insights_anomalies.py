"""Anomalies in generated days: a drop of one country's app use that the generator injects (a
tracking outage) is found on each of its days and explained by that country, and the other days
raise at most one false finding in 30. The daily metrics are counted from the generator's own
records (`cdp_sampledata/daily_counts.py`), so the detector is judged on a month of data without
running the lake for a month; the warehouse path is `test_insights_assets.py`'s. A small
population: the app's volume is what makes a drop of one country visible in a tenant's totals (a
shop of this size has too few orders a day for that). `bench/insights_detector.py` runs more seeds."""

from datetime import date, timedelta

from cdp_insights.anomalies import MIN_HISTORY_DAYS, detect
from cdp_insights.findings import digest
from cdp_sampledata.anomalies import CountryDrop
from cdp_sampledata.daily_counts import ADDITIVE, COUNTS, daily_metrics
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.population import build_population
from cdp_sampledata.streams import generate_day

START = date(2026, 3, 2)
JUDGED_DAYS = 32  # two of them dropped: 30 clean days judged
DAYS = MIN_HISTORY_DAYS + JUDGED_DAYS
CUSTOMERS = 1_500
SEED = 3
DROP = CountryDrop(tenant="acme_corp", country="US", first_day=DAYS - 6, days=2, kept=0.1, activity="app")


def test_an_injected_drop_is_found_on_each_day_and_explained_and_clean_days_stay_quiet():
    truth = DROP.truth(START)
    judged = [START + timedelta(days=MIN_HISTORY_DAYS + n) for n in range(JUDGED_DAYS)]
    rows = daily_metrics(SEED, "acme_corp", CUSTOMERS, DAYS, START, (DROP,))
    findings = detect(rows, judged, ADDITIVE, COUNTS)

    on_drop_days = {(f.metric, f.day.isoformat()) for f in findings if f.day.isoformat() in truth["days"]}
    assert on_drop_days == {(metric, day) for metric in truth["metrics"] for day in truth["days"]}
    for finding in findings:
        if finding.day.isoformat() in truth["days"]:
            assert finding.direction == truth["direction"] and finding.actual < finding.low
            top = finding.contributors[0]
            assert (top.dimension, top.member) == (truth["dimension"], truth["member"])
            assert top.share > 0.7 and top.excess > 0.3
            assert f"of the gap comes from country = {truth['member']} (usually" in finding.explanation
    false = [f for f in findings if f.day.isoformat() not in truth["days"]]
    assert len(judged) - len(truth["days"]) == 30 and len(false) <= 1, [f.explanation for f in false]
    text = digest(findings, [], judged[0], judged[-1])
    assert f"country = {truth['member']}" in text and text.count("\n- **") == len(findings)


def test_a_drop_is_opt_in_and_leaves_other_days_unchanged():
    population = build_population(SEED, "acme_corp", 600, 4)
    for index in range(4):
        plain = generate_day(population, index, START, 4, DirtRates(), 3, SEED).records
        dropped = generate_day(
            population, index, START, 4, DirtRates(), 3, SEED, (CountryDrop("acme_corp", "US", 2, 1),)
        ).records
        if index == 2:
            assert sum(map(len, dropped.values())) < sum(map(len, plain.values()))
        else:
            assert dropped == plain


def test_a_metric_usually_at_zero_that_moves_is_found_and_explained():
    """A small tenant's quiet metric (no orders for weeks), then orders from one country: the
    expected value is zero, and the finding still names the country (found at 1,096 days of a
    small tenant, where the detector divided by that zero)."""
    days = [START + timedelta(days=n) for n in range(MIN_HISTORY_DAYS + 14)]
    rows = []
    for day in days:
        orders = {"US": 6.0 if day == days[-1] else 0.0, "DE": 0.0}
        rows.append({"tenant_id": "acme_corp", "metric": "orders", "dimension": "total", "member": "all",
                     "day": day, "value": sum(orders.values())})  # fmt: skip
        rows += [
            {"tenant_id": "acme_corp", "metric": "orders", "dimension": "country", "member": country,
             "day": day, "value": value}
            for country, value in orders.items()
        ]  # fmt: skip
    (finding,) = detect(rows, [days[-1]], {"orders"}, {"orders"})
    assert (finding.actual, finding.expected, finding.direction) == (6.0, 0.0, "up")
    top = finding.contributors[0]
    assert (top.dimension, top.member, top.share, top.expected_share) == ("country", "US", 1.0, 0.0)
    assert "of the gap comes from country = US (usually 0% of orders)" in finding.explanation
