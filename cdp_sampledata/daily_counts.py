"""The daily metrics of generated days, counted from the generator's own records (not through the
lake): orders and revenue by the buyer's country, app events and devices by the user's country
and events by name, in the rows of `insights.daily_metrics`. The ground truth the anomaly detector
is judged on over a month of days, without running the lake for a month."""

from collections import Counter, defaultdict
from datetime import date, timedelta

from cdp_sampledata.anomalies import CountryDrop
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.population import build_population
from cdp_sampledata.streams import fx_rates_for, generate_day

ADDITIVE = {"orders", "revenue_usd", "events", "sessions"}
COUNTS = ADDITIVE - {"revenue_usd"}


def daily_metrics(
    seed: int, tenant: str, customers: int, days: int, start: date, anomalies: tuple[CountryDrop, ...] = ()
) -> list[dict]:
    population = build_population(seed, tenant, customers, days)
    buyer_country = {p.shopify_customer_id: p.country for p in population.people if p.shopify_customer_id}
    user_country = {p.app_user_id: p.country for p in population.people if p.app_user_id}
    values: Counter = Counter()
    for index in range(days):
        day = start + timedelta(days=index)
        records = defaultdict(list)
        for ((provider, stream), _), rows in generate_day(
            population, index, start, days, DirtRates(), 3, seed, anomalies
        ).records.items():
            records[(provider, stream)] += rows
        fx = fx_rates_for(day)
        for order in records[("shopify", "orders")]:
            country = buyer_country.get(order["customer"]["id"], "unknown")
            usd = float(order["total_price"]) / fx.get(order["currency"], 1.0)
            for dimension, member in (("total", "all"), ("country", country)):
                values[(day, "orders", dimension, member)] += 1
                values[(day, "revenue_usd", dimension, member)] += usd
        devices: dict[str, str] = {}
        for event in records[("app", "events")]:
            country = user_country.get(event["user_id"], "unknown")
            for dimension, member in (("total", "all"), ("country", country), ("event", event["event"] or "unknown")):
                values[(day, "events", dimension, member)] += 1
            if devices.get(event["anonymous_id"], "unknown") == "unknown":
                devices[event["anonymous_id"]] = country
        for country in devices.values():
            for dimension, member in (("total", "all"), ("country", country)):
                values[(day, "sessions", dimension, member)] += 1
    return [
        {"tenant_id": tenant, "day": day, "metric": metric, "dimension": dimension, "member": member, "value": value}
        for (day, metric, dimension, member), value in values.items()
    ]
