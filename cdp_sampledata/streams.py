"""One tenant-day of source records for every provider stream, with dirt applied and recorded.

`generate_day` returns the records grouped by stream and by how many days late they arrive, and
the truth about each dirty record. It depends only on (seed, tenant, day), so days can be made
in any order or in parallel and give the same bytes.
"""

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from cdp_activation.hashing import hashed_email
from cdp_resources.consent import PURPOSES
from cdp_sampledata.anomalies import CountryDrop
from cdp_sampledata.dirt import (
    DirtRates,
    app_timestamp,
    country_variant,
    email_variant,
    invalid_email,
    iso_with_offset,
    phone_variant,
    salesforce_timestamp,
)
from cdp_sampledata.population import CITIES, Person, Population
from cdp_sampledata.purchases import Timeline

FX_BASE_RATES = {"EUR": 0.92, "GBP": 0.79, "CAD": 1.36, "JPY": 151.0, "AUD": 1.52, "CHF": 0.88}
OPPORTUNITY_STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost")
STREAMS = (
    ("salesforce", "accounts"),
    ("salesforce", "contacts"),
    ("salesforce", "opportunities"),
    ("shopify", "customers"),
    ("shopify", "orders"),
    ("shopify", "products"),
    ("stripe", "customers"),
    ("stripe", "charges"),
    ("app", "events"),
    ("fx", "rates"),
    ("campaigns", "results"),
)
# Campaigns the sample's email platform sends each day, and the funnel of their results.
CAMPAIGN_SEGMENTS = ("rfm_champions", "lifecycle_active", "behaviour_highly_engaged")
CAMPAIGN_FUNNEL = (
    ("delivered", 0.97),
    ("opened", 0.4),
    ("clicked", 0.3),
    ("converted", 0.2),
)  # each of the step before
UNSUBSCRIBE_RATE = 0.03
# Consent: the purposes a person states a choice for, and how each source words them. An app's
# consent manager names its categories as its owner likes (Segment's categoryPreferences), so the
# same purpose arrives under several spellings, beside categories that are no marketing purpose.
CATEGORY_SPELLINGS = {
    "email_marketing": ("email_marketing", "Email Marketing", "EmailMarketing"),
    "sms_marketing": ("sms_marketing", "SMS Marketing", "Sms-Marketing"),
    "advertising": ("Advertising", "advertising", "ADVERTISING"),
}
OTHER_CATEGORIES = ("Analytics", "Functional")
CONSENT_EVENT = "Segment Consent Preference Updated"
SALESFORCE_OPT_OUT_RATE = 0.2
MISSING_ACCEPTS_MARKETING = 0.05  # Shopify customers sent without accepts_marketing: no statement
APP_CONSENT_SHARE = 0.6  # identify calls that carry the consent manager's preferences
CONSENT_UPDATES = 0.03  # share of app users who change their preferences on a given day
# The stream that gains a field part-way through the date range.
DRIFTING_STREAM, DRIFT_FIELD = ("shopify", "customers"), "sms_marketing_consent"


@dataclass
class DayOutput:
    """Records keyed by ((provider, stream), days_late), one truth row per dirty record and one per
    consent statement (person, purpose, granted or denied, source, when)."""

    records: dict[tuple[tuple[str, str], int], list[dict]] = field(default_factory=lambda: defaultdict(list))
    dirt: list[dict] = field(default_factory=list)
    consent: list[dict] = field(default_factory=list)  # every consent statement a valid record carries


def fx_rates_for(day: date) -> dict[str, float]:
    """USD-based rates for `day`: a smooth deterministic drift around the base rates."""
    wobble = ((day.toordinal() * 7919) % 200 - 100) / 10_000
    return {currency: round(rate * (1 + wobble), 6) for currency, rate in FX_BASE_RATES.items()}


class _DayMaker:
    def __init__(
        self,
        population: Population,
        day_index: int,
        first_day: date,
        days: int,
        rates: DirtRates,
        late_days: int,
        seed: int,
        anomalies: tuple[CountryDrop, ...] = (),
        purchases: dict[str, Timeline] | None = None,
    ):
        self.pop, self.day_index, self.days = population, day_index, days
        self.drops = {
            activity: [a for a in anomalies if a.applies(population.tenant, day_index, activity)]
            for activity in ("orders", "app")
        }
        self.purchases = purchases
        self.day = first_day + timedelta(days=day_index)
        self.midnight = datetime.combine(self.day, time(0), UTC)
        self.rates, self.late_days = rates, late_days
        self.rng = random.Random(f"{seed}:{population.tenant}:{self.day.isoformat()}")
        # Identity dirt draws from its own stream, so adding it left every other record unchanged.
        self.identity_rng = random.Random(f"{seed}:{population.tenant}:{self.day.isoformat()}:identity")
        self.campaign_rng = random.Random(f"{seed}:{population.tenant}:{self.day.isoformat()}:campaigns")
        self.consent_rng = random.Random(f"{seed}:{population.tenant}:{self.day.isoformat()}:consent")
        self.anomaly_rng = random.Random(f"{seed}:{population.tenant}:{self.day.isoformat()}:anomalies")
        self.store_inbox = f"instore@{population.tenant.replace('_', '')}-shop.com"
        self.kiosk_id = str(
            uuid.UUID(int=random.Random(f"{seed}:{population.tenant}:kiosk").getrandbits(128), version=4)
        )
        self.out = DayOutput()
        self.fx = fx_rates_for(self.day)
        self.next_id = (day_index + 1) * 10_000_000

    # helpers -------------------------------------------------------------------------------
    def moment(self, latest_second: int = 86_399) -> datetime:
        return self.midnight + timedelta(seconds=self.rng.randrange(latest_second))

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(self, provider: str, stream: str, record: dict, record_id, can_be_late: bool = False) -> int:
        days_late = 0
        if can_be_late and self.rng.random() < self.rates.late:
            days_late = self.rng.randint(1, self.late_days)
            self.dirt(provider, stream, record_id, "late", days_late=days_late)
        self.out.records[((provider, stream), days_late)].append(record)
        return days_late

    def dirt(self, provider: str, stream: str, record_id, kind: str, **details) -> None:
        self.out.dirt.append({"stream": f"{provider}/{stream}", "id": record_id, "dirt": kind, **details})

    def email_for(self, provider: str, stream: str, record_id, person: Person) -> str:
        if self.rng.random() < self.rates.invalid_email:
            self.dirt(provider, stream, record_id, "invalid_email", true_email=person.email)
            return invalid_email(self.rng, person.email)
        return email_variant(self.rng, person.email)

    def state(self, person: Person, purpose: str, granted: bool, at: datetime, source: str) -> None:
        self.out.consent.append(
            {
                "person_id": person.person_id,
                "purpose": purpose,
                "status": "granted" if granted else "denied",
                "source": source,
                "stated_at": at.astimezone(UTC).isoformat(),
            }
        )

    def category_preferences(self, person: Person, purposes: tuple[str, ...], at: datetime) -> dict:
        """The app's `context.consent.categoryPreferences` for `purposes` (stated at `at`), in the
        spellings the consent manager uses, beside categories that are no marketing purpose."""
        rng = self.consent_rng
        preferences = {category: rng.random() < 0.8 for category in OTHER_CATEGORIES if rng.random() < 0.5}
        for purpose in purposes:
            granted = rng.random() < 0.6
            preferences[rng.choice(CATEGORY_SPELLINGS[purpose])] = granted
            self.state(person, purpose, granted, at, "app_consent")
        return {"consent": {"categoryPreferences": preferences}}

    def amount(self, provider: str, stream: str, record_id, amount: float) -> float:
        if self.rng.random() < self.rates.non_positive_amount:
            self.dirt(provider, stream, record_id, "non_positive_amount")
            return -amount if self.rng.random() < 0.5 else 0.0
        return amount

    def local_price(self, usd: float, currency: str) -> float:
        return round(usd * self.fx.get(currency, 1.0), 2)

    # streams -------------------------------------------------------------------------------
    def reference_data(self) -> None:
        for currency, rate in self.fx.items():
            self.emit(
                "fx",
                "rates",
                {"date": self.day.isoformat(), "base": "USD", "currency": currency, "rate": rate},
                currency,
            )
        if self.day_index == 0:
            for company in self.pop.companies:
                created = self.moment()
                self.emit(
                    "salesforce",
                    "accounts",
                    {
                        "Id": company.account_id,
                        "Name": company.name,
                        "Website": f"www.{company.domain}",
                        "Industry": company.industry,
                        "NumberOfEmployees": company.employees,
                        "AnnualRevenue": company.annual_revenue,
                        "BillingCountry": country_variant(self.rng, company.country),
                        "CreatedDate": salesforce_timestamp(created),
                        "LastModifiedDate": salesforce_timestamp(created),
                    },
                    company.account_id,
                )
        for product in self.pop.products:
            if self.day_index == 0 or self.rng.random() < 0.01:
                stamp = iso_with_offset(self.moment(), self.rng)
                price = product.price if self.day_index == 0 else round(product.price * self.rng.uniform(0.8, 1.2), 2)
                self.emit(
                    "shopify",
                    "products",
                    {
                        "id": product.product_id,
                        "title": product.title,
                        "product_type": product.product_type,
                        "vendor": self.pop.tenant,
                        "created_at": stamp,
                        "updated_at": stamp,
                        "variants": [{"id": product.variant_id, "sku": product.sku, "price": f"{price:.2f}"}],
                    },
                    product.product_id,
                )

    def shopify_customer(self, person: Person, stamp: datetime, created: datetime) -> None:
        dirt_before = len(self.out.dirt)
        record = {
            "id": person.shopify_customer_id,
            "email": self.email_for("shopify", "customers", person.shopify_customer_id, person),
            "first_name": person.first_name,
            "last_name": person.last_name,
            "phone": phone_variant(self.rng, person) if self.rng.random() < 0.9 else None,
            "created_at": iso_with_offset(created, self.rng),
            "updated_at": iso_with_offset(stamp, self.rng),
            "accepts_marketing": self.rng.random() < 0.5,
            "tags": "",
            "default_address": {
                "city": CITIES[person.country],
                "country_code": person.country,
                "country": country_variant(self.rng, person.country),
            },
        }
        if self.day_index >= self.days // 2:
            record[DRIFT_FIELD] = {
                "state": self.rng.choice(("subscribed", "not_subscribed")),
                "opt_in_level": "single_opt_in",
            }
        self.shopify_consent(person, record, stamp, valid=len(self.out.dirt) == dirt_before)
        self.emit("shopify", "customers", record, person.shopify_customer_id)

    def shopify_consent(self, person: Person, record: dict, stamp: datetime, valid: bool) -> None:
        """The customer's statements (none from a record with an invalid email: it is dead-lettered),
        with the dirt of the field: accepts_marketing left out, SMS states spelled several ways."""
        rng = self.consent_rng
        if rng.random() < MISSING_ACCEPTS_MARKETING:
            record["accepts_marketing"] = None
            self.dirt("shopify", "customers", person.shopify_customer_id, "consent_missing")
        elif valid:
            self.state(person, "email_marketing", record["accepts_marketing"], stamp, "shopify_accepts_marketing")
        sms = record.get(DRIFT_FIELD)
        if sms is None:
            return
        if sms["state"] == "not_subscribed" and rng.random() < 0.3:
            sms["state"] = "unsubscribed"
        elif rng.random() < 0.05:
            sms["state"] = "pending"  # double opt-in not confirmed yet: no statement
        if sms["state"] != "pending" and valid:
            self.state(person, "sms_marketing", sms["state"] == "subscribed", stamp, "shopify_sms_marketing_consent")
        if rng.random() < 0.2:
            sms["state"] = sms["state"].upper()

    def signups(self, people: list[Person]) -> None:
        for person in people:
            created = self.moment(86_000)
            if person.shopify_customer_id:
                self.shopify_customer(person, created, created)
            if person.stripe_customer_id:
                dirt_before = len(self.out.dirt)
                email = self.email_for("stripe", "customers", person.stripe_customer_id, person)
                valid = len(self.out.dirt) == dirt_before  # a record that already has an invalid email keeps it
                if valid and person.company and self.identity_rng.random() < self.rates.role_inbox:
                    email = f"billing@{person.company.domain}"
                    self.dirt("stripe", "customers", person.stripe_customer_id, "role_inbox", value=email)
                self.emit(
                    "stripe",
                    "customers",
                    {
                        "id": person.stripe_customer_id,
                        "object": "customer",
                        "email": email,
                        "name": f"{person.first_name} {person.last_name}",
                        "phone": phone_variant(self.rng, person) if self.rng.random() < 0.6 else None,
                        "created": int(created.timestamp()),
                        "address": {"country": person.country},
                        "metadata": {},
                    },
                    person.stripe_customer_id,
                )
            if person.salesforce_contact_id:
                dirt_before = len(self.out.dirt)
                email = self.email_for("salesforce", "contacts", person.salesforce_contact_id, person)
                opted_out = self.consent_rng.random() < SALESFORCE_OPT_OUT_RATE
                if opted_out and len(self.out.dirt) == dirt_before:  # not opted out says nothing: no statement
                    self.state(person, "email_marketing", False, created, "salesforce_email_opt_out")
                self.emit(
                    "salesforce",
                    "contacts",
                    {
                        "Id": person.salesforce_contact_id,
                        "AccountId": person.company.account_id if person.company else None,
                        "FirstName": person.first_name,
                        "LastName": person.last_name,
                        "Email": email,
                        "Phone": phone_variant(self.rng, person),
                        "HasOptedOutOfEmail": opted_out,
                        "MailingCountry": country_variant(self.rng, person.country),
                        "CreatedDate": salesforce_timestamp(created),
                        "LastModifiedDate": salesforce_timestamp(created),
                    },
                    person.salesforce_contact_id,
                )
            if person.app_user_id:
                event_id = self.uuid()
                self.app_event(
                    event_id,
                    {
                        "message_id": event_id,
                        "type": "identify",
                        "event": None,
                        "user_id": person.app_user_id,
                        "anonymous_id": person.anonymous_ids[0],
                        "timestamp": app_timestamp(created, self.rng),
                        "traits": {
                            "email": email_variant(self.rng, person.email),
                            "phone": phone_variant(self.rng, person),
                        },
                        "properties": {},
                        **(
                            {"context": self.category_preferences(person, PURPOSES, created)}
                            if self.consent_rng.random() < APP_CONSENT_SHARE
                            else {}
                        ),
                    },
                )

    def customer_updates(self, existing: list[Person]) -> None:
        shoppers = [p for p in existing if p.shopify_customer_id]
        for person in self.rng.sample(shoppers, int(len(shoppers) * 0.005)):
            created = self.midnight - timedelta(days=self.day_index - person.signup_day)
            self.shopify_customer(person, self.moment(), created)

    def app_event(self, event_id: str, record: dict) -> None:
        days_late = self.emit("app", "events", record, event_id, can_be_late=True)
        duplicate_chance = self.rates.duplicate_events / (1 - self.rates.duplicate_events)
        if self.rng.random() < duplicate_chance:
            self.out.records[(("app", "events"), days_late)].append(record)
            self.dirt("app", "events", event_id, "duplicate")

    def session(self, user: Person | None, orders_today: dict[str, dict]) -> None:
        anonymous_id = self.rng.choice(user.anonymous_ids) if user else self.uuid()
        on_kiosk = user is not None and self.identity_rng.random() < self.rates.shared_device
        if on_kiosk:
            anonymous_id = self.kiosk_id
        user_id = user.app_user_id if user else None
        clock = self.moment(82_000)
        steps = ["page_view"] * self.rng.randint(1, 5)
        if self.rng.random() < 0.5:
            steps.append("add_to_cart")
            order = orders_today.get(user.person_id) if user else None
            if order or (user and self.rng.random() < 0.3):
                steps.append("checkout")
                if order:
                    steps.append("purchase")
        product = self.rng.choice(self.pop.products)
        for index, step in enumerate(steps):
            clock += timedelta(seconds=self.rng.randint(5, 120))
            event_id = self.uuid()
            record_user = user_id
            if user_id and self.rng.random() < self.rates.missing_user_id:
                record_user = None
                self.dirt("app", "events", event_id, "missing_user_id", true_user_id=user_id)
            properties = {"url": f"/products/{product.sku.lower()}"}
            if step != "page_view":
                properties.update(product_id=product.product_id, price=product.price, currency="USD")
            if step == "purchase":
                properties.update(order_id=order["id"], revenue=float(order["total_price"]), currency=order["currency"])
            if on_kiosk and index == 0:
                self.dirt("app", "events", event_id, "shared_device", value=anonymous_id)
            self.app_event(
                event_id,
                {
                    "message_id": event_id,
                    "type": "track",
                    "event": step,
                    "user_id": record_user,
                    "anonymous_id": anonymous_id,
                    "timestamp": app_timestamp(clock, self.rng),
                    "properties": properties,
                },
            )

    def order_email(self, order_id: int, person: Person) -> str:
        email = email_variant(self.rng, person.email)
        if self.identity_rng.random() < self.rates.store_inbox:
            self.dirt("shopify", "orders", order_id, "store_inbox", value=self.store_inbox)
            return self.store_inbox
        return email

    def order(self, person: Person, value_usd: float | None = None) -> dict:
        """An order of 1-4 random products, or of one product at `value_usd` (the purchase
        behaviour's spend, so the order's total is the truth's value)."""
        order_id = self.new_id()
        placed = self.moment(80_000)
        lines = []
        products = self.rng.sample(self.pop.products, 1 if value_usd else self.rng.randint(1, 4))
        for product in products:
            quantity = 1 if value_usd else self.rng.randint(1, 3)
            lines.append(
                {
                    "id": self.new_id(),
                    "product_id": product.product_id,
                    "variant_id": product.variant_id,
                    "sku": product.sku,
                    "quantity": quantity,
                    "price": f"{self.local_price(value_usd or product.price, person.currency):.2f}",
                }
            )
        total = round(sum(float(line["price"]) * line["quantity"] for line in lines), 2)
        total = self.amount("shopify", "orders", order_id, total)
        record = {
            "id": order_id,
            "order_number": order_id % 10_000_000,
            "email": self.order_email(order_id, person),
            "customer": {"id": person.shopify_customer_id},
            "created_at": iso_with_offset(placed, self.rng),
            "currency": person.currency,
            "total_price": f"{total:.2f}",
            "financial_status": "paid",
            "line_items": lines,
        }
        self.emit("shopify", "orders", record, order_id, can_be_late=True)
        if person.stripe_customer_id:
            charge_id = f"ch_{self.uuid().replace('-', '')[:24]}"
            cents = int(round(self.amount("stripe", "charges", charge_id, abs(total) or 1.0) * 100))
            self.emit(
                "stripe",
                "charges",
                {
                    "id": charge_id,
                    "object": "charge",
                    "amount": cents,
                    "currency": person.currency.lower(),
                    "customer": person.stripe_customer_id,
                    "status": "succeeded",
                    "created": int((placed + timedelta(seconds=self.rng.randint(1, 60))).timestamp()),
                    "billing_details": {
                        "email": email_variant(self.rng, person.email),
                        "phone": phone_variant(self.rng, person) if self.rng.random() < 0.5 else None,
                    },
                    "metadata": {"order_id": str(order_id)},
                },
                charge_id,
                can_be_late=True,
            )
        return record

    def opportunities(self) -> None:
        for _ in range(max(1, len(self.pop.people) // 500)):
            company = self.rng.choice(self.pop.companies)
            opportunity_id = f"006{self.uuid().replace('-', '')[:15]}"
            created = self.moment()
            self.emit(
                "salesforce",
                "opportunities",
                {
                    "Id": opportunity_id,
                    "AccountId": company.account_id,
                    "Name": f"{company.name} renewal",
                    "StageName": self.rng.choice(OPPORTUNITY_STAGES),
                    "Amount": round(self.rng.uniform(1_000, 250_000), 2),
                    "CurrencyIsoCode": "USD",
                    "CloseDate": (self.day + timedelta(days=self.rng.randint(10, 120))).isoformat(),
                    "CreatedDate": salesforce_timestamp(created),
                    "LastModifiedDate": salesforce_timestamp(created),
                },
                opportunity_id,
            )

    def make(self) -> DayOutput:
        people = self.pop.people
        existing = [p for p in people if p.signup_day < self.day_index]
        self.reference_data()
        self.signups([p for p in people if p.signup_day == self.day_index])
        self.customer_updates(existing)
        self.opportunities()
        active = [p for p in people if p.signup_day <= self.day_index]
        shoppers = [p for p in active if p.shopify_customer_id]
        if self.purchases is None:  # 2 % of shoppers order, at random
            buyers = [p for p in self.rng.sample(shoppers, int(len(shoppers) * 0.02)) if not self.dropped("orders", p)]
            orders = {p.person_id: self.order(p) for p in buyers}
        else:  # each shopper's orders of the day on their purchase timeline
            orders = {
                p.person_id: self.order(p, value)
                for p in shoppers
                for day, value in self.purchases[p.person_id].orders
                if day == self.day_index and not self.dropped("orders", p)
            }
        app_users = [p for p in active if p.app_user_id]
        for user in self.rng.sample(app_users, int(len(app_users) * 0.25)):
            if not self.dropped("app", user):
                self.session(user, orders)
        for _ in range(len(people) // 10):
            self.session(None, orders)
        self.campaign_results([p for p in active if p.email])
        self.consent_updates([p for p in app_users if p.signup_day < self.day_index])
        return self.out

    def consent_updates(self, app_users: list[Person]) -> None:
        """Some users change their preferences in the app's consent manager (from an RNG of its own,
        so the other streams are unchanged)."""
        rng = self.consent_rng
        for person in rng.sample(app_users, int(len(app_users) * CONSENT_UPDATES)):
            moment = self.midnight + timedelta(seconds=rng.randrange(86_000))
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            purposes = tuple(p for p in PURPOSES if rng.random() < 0.5) or (rng.choice(PURPOSES),)
            self.out.records[(("app", "events"), 0)].append(
                {
                    "message_id": event_id,
                    "type": "track",
                    "event": CONSENT_EVENT,
                    "user_id": person.app_user_id,
                    "anonymous_id": person.anonymous_ids[0],
                    "timestamp": app_timestamp(moment, rng),
                    "properties": {},
                    "context": self.category_preferences(person, purposes, moment),
                }
            )

    def dropped(self, activity: str, person: Person) -> bool:
        """Whether an injected drop takes away this person's order or app session today (its own
        RNG: without drops, no draw is made and the day is unchanged)."""
        return any(d.country == person.country and self.anomaly_rng.random() >= d.kept for d in self.drops[activity])

    def campaign_results(self, recipients: list[Person]) -> None:
        """Each campaign reaches a sample of the tenant's people; its results come back from the platform
        (from an RNG of its own, so the other streams are unchanged)."""
        rng = self.campaign_rng
        for segment in CAMPAIGN_SEGMENTS:
            campaign = f"{self.day.isoformat()}-{segment}"
            for person in rng.sample(recipients, min(len(recipients), max(1, len(recipients) // 50))):
                moment = self.midnight + timedelta(seconds=rng.randrange(36_000))
                for event_type, rate in CAMPAIGN_FUNNEL:
                    if rng.random() >= rate:
                        break
                    moment += timedelta(seconds=rng.randrange(1, 3_600))
                    self._campaign_event(rng, campaign, segment, person, event_type, moment)
                if rng.random() < UNSUBSCRIBE_RATE:
                    moment += timedelta(seconds=60)
                    self._campaign_event(rng, campaign, segment, person, "unsubscribed", moment)
                    self.state(person, "email_marketing", False, moment, "campaign_unsubscribe")

    def _campaign_event(
        self, rng: random.Random, campaign: str, segment: str, person: Person, event_type: str, moment: datetime
    ) -> None:
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.emit(
            "campaigns",
            "results",
            {
                "event_id": event_id,
                "campaign_id": campaign,
                "destination": "email_platform",
                "segment": segment,
                "cdp_customer_id": None,
                "email_sha256": hashed_email(person.email),
                "event_type": event_type,
                "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            event_id,
        )


def generate_day(
    population: Population,
    day_index: int,
    first_day: date,
    days: int,
    rates: DirtRates,
    late_days: int,
    seed: int,
    anomalies: tuple[CountryDrop, ...] = (),
    purchases: dict[str, Timeline] | None = None,
) -> DayOutput:
    return _DayMaker(population, day_index, first_day, days, rates, late_days, seed, anomalies, purchases).make()
