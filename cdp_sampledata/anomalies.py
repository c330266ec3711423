"""Anomalies the generator can inject, with their ground truth: for checking that the insights find
and explain them. Opt-in (`GeneratorConfig.anomalies`), so the default sample is unchanged."""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

# What drops, and the daily metrics that show it.
METRICS = {"orders": ["orders", "revenue_usd"], "app": ["events", "sessions"]}


@dataclass(frozen=True)
class CountryDrop:
    """From day index `first_day`, for `days` days, the tenant's people in `country` do only `kept`
    of what they would have done (0.0: nothing): place orders (`activity="orders"`, a payment
    outage) or use the app (`"app"`, a tracking outage)."""

    tenant: str
    country: str
    first_day: int
    days: int = 2
    kept: float = 0.0
    activity: Literal["orders", "app"] = "orders"

    def applies(self, tenant: str, day_index: int, activity: str) -> bool:
        return (
            tenant == self.tenant
            and activity == self.activity
            and self.first_day <= day_index < self.first_day + self.days
        )

    def truth(self, start: date) -> dict:
        """What the insights should report: the metrics that drop, on which days, explained by which slice."""
        first = start + timedelta(days=self.first_day)
        return {
            "kind": f"{self.activity}_drop",
            "tenant": self.tenant,
            "metrics": METRICS[self.activity],
            "direction": "down",
            "days": [(first + timedelta(days=i)).isoformat() for i in range(self.days)],
            "dimension": "country",
            "member": self.country,
            "kept": self.kept,
        }
