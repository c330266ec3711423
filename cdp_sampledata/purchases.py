"""Purchase behaviour with a known answer: who buys when, and for how much, as BG/NBD and
Gamma-Gamma assume.

Each shopper has a latent purchase rate λ ~ Gamma(r, α) (orders per day), a dropout probability
p ~ Beta(a, b) (after each repeat order, the shopper leaves for good with probability p: as
BG/NBD assumes, the first order never ends a customer) and a spend
scale ν ~ Gamma(q, γ) (each order's value ~ Gamma(spend_p, ν), in USD). The first order is on the
signup day, then orders follow a Poisson process of rate λ while the shopper is alive. Everything is
drawn from (seed, tenant, person), so a person's timeline does not depend on the days generated
around it, and the latent values are written to the truth for tests to compare with.
"""

import math
import random
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pandas as pd

from cdp_sampledata.population import Population


@dataclass(frozen=True)
class PurchaseBehaviour:
    """The population's true parameters (the names of Fader, Hardie and Lee's papers; rates per day).
    The defaults: about one order a month on average while active (r/α = 0.036 a day), a 0.29
    chance on average of leaving after each repeat order (a/(a+b)), and orders worth 45 USD on average
    (spend_p·spend_gamma/(spend_q − 1))."""

    r: float = 0.9
    alpha: float = 25.0
    a: float = 1.4
    b: float = 3.5
    spend_p: float = 4.0
    spend_q: float = 5.0
    spend_gamma: float = 45.0


@dataclass(frozen=True)
class Timeline:
    """One shopper's latent values and orders: (day index, value in USD) in order."""

    person_id: str
    purchase_rate: float
    dropout_probability: float
    spend_scale: float
    dropout_day: float | None  # the day (fractional) they left, None while still alive at the end
    orders: tuple[tuple[int, float], ...]

    def truth(self) -> dict:
        row = asdict(self)
        row["orders"] = len(self.orders)
        return row


def timeline(seed: int, tenant: str, person_id: str, signup_day: int, days: int, behaviour: PurchaseBehaviour):
    """`person_id`'s orders over days [signup_day, days): the first on the signup day (BG/NBD's
    clock starts at the first purchase), then exponential gaps at rate λ, each repeat order the
    last with probability p."""
    rng = random.Random(f"{seed}:{tenant}:{person_id}:purchases")
    rate = rng.gammavariate(behaviour.r, 1 / behaviour.alpha)
    dropout = rng.betavariate(behaviour.a, behaviour.b)
    scale = rng.gammavariate(behaviour.spend_q, 1 / behaviour.spend_gamma)

    def value() -> float:
        return round(max(0.5, rng.gammavariate(behaviour.spend_p, 1 / scale)), 2)

    orders, clock, left = [(signup_day, value())], signup_day + rng.random(), None
    while True:
        clock += rng.expovariate(rate) if rate > 0 else math.inf
        if clock >= days:
            break
        orders.append((int(clock), value()))
        if rng.random() < dropout:  # after each repeat order (not the first), gone for good
            left = clock
            break
    return Timeline(person_id, rate, dropout, scale, left, tuple(orders))


def timelines(population: Population, days: int, behaviour: PurchaseBehaviour, seed: int) -> dict[str, Timeline]:
    """Every shopper's timeline (people without a shop id never order)."""
    return {
        person.person_id: timeline(seed, population.tenant, person.person_id, person.signup_day, days, behaviour)
        for person in population.people
        if person.shopify_customer_id
    }


def order_table(tenant: str, shoppers: dict[str, Timeline], start: date) -> pd.DataFrame:
    """The shoppers' orders as rows (tenant_id, cdp_customer_id, order_id, order_date, total_usd),
    the person id standing for the profile: purchase history without the rest of the sample."""
    people = [(person_id, day, value) for person_id, line in shoppers.items() for day, value in line.orders]
    frame = pd.DataFrame(people, columns=["cdp_customer_id", "day", "total_usd"])
    frame.insert(0, "tenant_id", tenant)
    frame["order_id"] = np.arange(len(frame)).astype(str)
    frame["order_date"] = (pd.Timestamp(start) + pd.to_timedelta(frame.pop("day"), unit="D")).dt.date
    return frame
