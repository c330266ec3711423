"""The dirt real sources have, at set rates, and the many ways one value is written.

Rates are shares of the records they apply to (see `DirtRates`); formatting variants (email case
and whitespace, phone formats, timestamp formats and offsets, country spellings) are applied to
every record at random and are not counted as dirt: a clean pipeline must read them all.
"""

import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from cdp_sampledata.population import Person


@dataclass(frozen=True)
class DirtRates:
    duplicate_events: float = 0.15  # share of delivered app events that are redeliveries (at-least-once)
    missing_user_id: float = 0.03  # share of logged-in users' events delivered without their user_id
    invalid_email: float = 0.02  # share of customer and contact records with an unusable email
    non_positive_amount: float = 0.01  # share of orders and charges with a zero or negative amount
    late: float = 0.05  # share of events, orders and charges that arrive 1..late_days days late
    # Identifiers that stand for no single person (identity resolution must not merge through them):
    role_inbox: float = 0.25  # share of B2B people's Stripe customers billed to the company's billing@ inbox
    store_inbox: float = 0.10  # share of orders keyed in by store staff under the store's own inbox
    shared_device: float = 0.02  # share of app users' sessions on the store's kiosk browser (one anonymous id)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


INVALID_EMAIL_SHAPES = (
    "{local}@",
    "{local} at {domain}",
    "{local}@@{domain}",
    "@{domain}",
    "{local}@{domain_no_dot}",
    "n/a",
)
OFFSETS = (
    timedelta(hours=-8),
    timedelta(hours=-5),
    timedelta(0),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=5, minutes=30),
)
COUNTRY_SPELLINGS = {
    "US": ("US", "USA", "United States", "us"),
    "GB": ("GB", "GBR", "United Kingdom", "gb"),
    "DE": ("DE", "DEU", "Germany", "de"),
    "FR": ("FR", "FRA", "France", "fr"),
    "CA": ("CA", "CAN", "Canada", "ca"),
}


def email_variant(rng: random.Random, email: str) -> str:
    """The same address as a person might type it: case and surrounding whitespace vary."""
    roll = rng.random()
    if roll < 0.6:
        return email
    if roll < 0.75:
        local, domain = email.split("@")
        return f"{local.title()}@{domain.title()}"
    if roll < 0.85:
        return email.upper()
    if roll < 0.95:
        return f" {email} "
    return f"{email}\t"


def invalid_email(rng: random.Random, email: str) -> str:
    local, domain = email.split("@")
    return rng.choice(INVALID_EMAIL_SHAPES).format(local=local, domain=domain, domain_no_dot=domain.replace(".", ""))


def phone_variant(rng: random.Random, person: Person) -> str:
    """The person's phone in one of the formats sources use (all parse to the same E.164)."""
    n, code = person.phone_national, person.calling_code
    style = rng.randrange(4)
    if style == 0:
        return person.phone_e164
    if code == "1":
        return (f"({n[:3]}) {n[3:6]}-{n[6:]}", f"{n[:3]}.{n[3:6]}.{n[6:]}", f"+1 {n[:3]}-{n[3:6]}-{n[6:]}")[style - 1]
    if code == "44":
        return (f"0{n[:4]} {n[4:]}", f"+44 {n[:4]} {n[4:]}", f"0{n}")[style - 1]
    if code == "49":
        return (f"0{n[:3]} {n[3:]}", f"+49 {n[:3]} {n[3:]}", f"0{n}")[style - 1]
    pairs = " ".join(n[i : i + 2] for i in range(1, len(n), 2))
    return (f"0{n[0]} {pairs}", f"+33 {n[0]} {pairs}", f"0{n}")[style - 1]


def country_variant(rng: random.Random, country: str) -> str:
    return rng.choice(COUNTRY_SPELLINGS[country])


def iso_with_offset(moment: datetime, rng: random.Random) -> str:
    """ISO 8601 in a random local offset, as Shopify sends it (`2026-01-05T10:15:00-05:00`)."""
    return moment.astimezone(timezone(rng.choice(OFFSETS))).isoformat(timespec="seconds")


def salesforce_timestamp(moment: datetime) -> str:
    """Salesforce's `2026-01-05T15:15:00.000+0000`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def app_timestamp(moment: datetime, rng: random.Random) -> str | int:
    """App events come from many SDKs: ISO Z, epoch millis, ISO with an offset, or naive UTC."""
    style = rng.randrange(4)
    if style == 0:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == 1:
        return int(moment.timestamp() * 1000)
    if style == 2:
        return iso_with_offset(moment, rng)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
