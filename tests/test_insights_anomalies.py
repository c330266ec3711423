"""Anomalies in generated days: a drop of one country's app use that the generator injects (a
tracking outage) is found on each of its days and explained by that country, and the other days
raise at most one false finding in 30. The daily metrics are counted from the generator's own
records (orders and revenue by the buyer's country, events and devices by the user's country), so
the detector is judged on a month of data without running the lake for a month; the warehouse
path is `test_insights_assets.py`'s. A small population: the app's volume is what makes a drop of
one country visible in a tenant's totals (a shop of this size has too few orders a day for that)."""

from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest

from cdp_insights.anomalies import MIN_HISTORY_DAYS, detect
from cdp_insights.findings import digest
from cdp_sampledata.anomalies import CountryDrop
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.population import build_population
from cdp_sampledata.streams import fx_rates_for, generate_day

START = date(2026, 3, 2)
JUDGED_DAYS = 32  # two of them dropped: 30 clean days judged
DAYS = MIN_HISTORY_DAYS + JUDGED_DAYS
CUSTOMERS = 1_500
SEED = 3
DROP = CountryDrop(tenant="acme_corp", country="US", first_day=DAYS - 6, days=2, kept=0.1, activity="app")
ADDITIVE = {"orders", "revenue_usd", "events", "sessions"}
COUNTS = ADDITIVE - {"revenue_usd"}


def _metrics(tenant: str, anomalies: tuple[CountryDrop, ...]) -> list[dict]:
    """The generated tenant's daily metrics as rows of insights.daily_metrics."""
    population = build_population(SEED, tenant, CUSTOMERS, DAYS)
    country = {p.shopify_customer_id: p.country for p in population.people if p.shopify_customer_id}
    user_country = {p.app_user_id: p.country for p in population.people if p.app_user_id}
    values: Counter = Counter()
    for index in range(DAYS):
        day = START + timedelta(days=index)
        output = generate_day(population, index, START, DAYS, DirtRates(), 3, SEED, anomalies)
        records = defaultdict(list)
        for ((provider, stream), _), rows in output.records.items():
            records[(provider, stream)] += rows
        fx = fx_rates_for(day)
        for order in records[("shopify", "orders")]:
            buyer = country.get(order["customer"]["id"], "unknown")
            usd = float(order["total_price"]) / fx.get(order["currency"], 1.0)
            for dimension, member in (("total", "all"), ("country", buyer)):
                values[(day, "orders", dimension, member)] += 1
                values[(day, "revenue_usd", dimension, member)] += usd
        devices: dict[str, str] = {}
        for event in records[("app", "events")]:
            user = user_country.get(event["user_id"], "unknown")
            for dimension, member in (("total", "all"), ("country", user), ("event", event["event"] or "unknown")):
                values[(day, "events", dimension, member)] += 1
            if devices.get(event["anonymous_id"], "unknown") == "unknown":
                devices[event["anonymous_id"]] = user
        for user in devices.values():
            for dimension, member in (("total", "all"), ("country", user)):
                values[(day, "sessions", dimension, member)] += 1
    return [
        {"tenant_id": tenant, "day": day, "metric": metric, "dimension": dimension, "member": member, "value": value}
        for (day, metric, dimension, member), value in values.items()
    ]


@pytest.fixture(scope="module")
def judged_days() -> list[date]:
    return [START + timedelta(days=MIN_HISTORY_DAYS + n) for n in range(JUDGED_DAYS)]


def test_an_injected_drop_is_found_on_each_day_and_explained_and_clean_days_stay_quiet(judged_days):
    truth = DROP.truth(START)
    findings = detect(_metrics("acme_corp", (DROP,)), judged_days, ADDITIVE, COUNTS)

    on_drop_days = {(f.metric, f.day.isoformat()) for f in findings if f.day.isoformat() in truth["days"]}
    assert on_drop_days == {(metric, day) for metric in truth["metrics"] for day in truth["days"]}
    for finding in findings:
        if finding.day.isoformat() in truth["days"]:
            assert finding.direction == truth["direction"]
            top = finding.contributors[0]
            assert (top.dimension, top.member) == (truth["dimension"], truth["member"])
            assert top.share > 0.7 and top.excess > 0.3
            assert f"of the gap comes from country = {truth['member']} (usually" in finding.explanation
            assert finding.actual < finding.low
    false = [f for f in findings if f.day.isoformat() not in truth["days"]]
    assert len(judged_days) - len(truth["days"]) == 30 and len(false) <= 1, [f.explanation for f in false]
    text = digest(findings, [], judged_days[0], judged_days[-1])
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
