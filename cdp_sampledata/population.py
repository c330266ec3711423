"""The people, companies and products of one tenant: the truth every source record is drawn from.

Built deterministically from (seed, tenant). Each person has one canonical email and E.164 phone
and an id in each system they use (Shopify, Stripe, Salesforce, the app); sources show them
under those different ids, with formatting dirt applied per record (see `dirt.py`).
"""

import csv
import functools
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

FIRST_NAMES = [
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "lena",
    "jonas",
    "mila",
    "noah",
    "emma",
    "liam",
    "olivia",
    "lucas",
    "sofia",
    "leon",
    "hannah",
    "felix",
    "clara",
    "paul",
    "marie",
    "louis",
    "alice",
    "hugo",
    "chloe",
    "arthur",
    "jade",
    "oscar",
    "isla",
    "theo",
    "freya",
    "ava",
    "omar",
    "yuki",
]
LAST_NAMES = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "thompson",
    "white",
    "harris",
    "clark",
    "lewis",
    "walker",
    "young",
    "allen",
    "muller",
    "schmidt",
    "schneider",
    "fischer",
    "weber",
    "meyer",
    "wagner",
    "becker",
    "dubois",
    "moreau",
    "laurent",
    "simon",
    "bernard",
    "tanaka",
]
# The companies B2B people work at: 90 % from this list, which the generator also writes as each
# tenant's company reference (the input the platform's enrichment reads), the rest unknown to it.
COMPANY_LIST = Path(__file__).parent / "reference" / "company_domains.csv"
FREE_MAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "gmx.de", "orange.fr")
INDUSTRIES = ("Technology", "Retail", "Healthcare", "Finance", "Manufacturing", "Education", "Media", "Logistics")
COMPANY_WORDS = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "stark",
    "wayne",
    "hooli",
    "vandelay",
    "wonka",
    "soylent",
    "tyrell",
    "cyberdyne",
    "aperture",
    "monarch",
    "oscorp",
    "gringotts",
    "dunder",
    "pied",
    "nakatomi",
    "virtucon",
    "massive",
    "blue",
    "north",
    "summit",
    "river",
    "pixel",
    "quantum",
]
COMPANY_SUFFIXES = ("labs", "systems", "group", "works", "retail", "health", "capital", "logistics")
PRODUCT_TYPES = ("Shoes", "Shirts", "Bags", "Watches", "Hats", "Jackets", "Accessories", "Home")
# (ISO alpha-2, weight, E.164 country code, national-number builder, currency)
COUNTRIES = (
    ("US", 0.55, "1", "us", "USD"),
    ("GB", 0.15, "44", "gb", "GBP"),
    ("DE", 0.12, "49", "de", "EUR"),
    ("FR", 0.08, "33", "fr", "EUR"),
    ("CA", 0.10, "1", "us", "CAD"),
)
US_AREA_CODES = ("212", "312", "415", "503", "617", "646", "702", "713", "206", "305", "416", "604", "514")
CITIES = {"US": "New York", "GB": "London", "DE": "Berlin", "FR": "Paris", "CA": "Toronto"}


@dataclass(slots=True)
class Company:
    account_id: str
    name: str
    domain: str
    industry: str
    employees: int
    annual_revenue: int
    country: str


@dataclass(slots=True)
class Person:
    person_id: str
    first_name: str
    last_name: str
    email: str
    phone_national: str  # digits after the country code
    calling_code: str
    country: str
    currency: str
    signup_day: int
    company: Company | None
    shopify_customer_id: int | None = None
    stripe_customer_id: str | None = None
    salesforce_contact_id: str | None = None
    app_user_id: str | None = None
    anonymous_ids: list[str] = field(default_factory=list)

    @property
    def phone_e164(self) -> str:
        return f"+{self.calling_code}{self.phone_national}"


@dataclass(slots=True)
class Product:
    product_id: int
    variant_id: int
    sku: str
    title: str
    product_type: str
    price: float


@dataclass
class Population:
    tenant: str
    people: list[Person]
    companies: list[Company]
    products: list[Product]


def _token(
    rng: random.Random, length: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _national_number(rng: random.Random, builder: str) -> str:
    if builder == "us":
        return f"{rng.choice(US_AREA_CODES)}{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(0, 9999):04d}"
    if builder == "gb":
        return f"7{rng.randint(400, 999)}{rng.randint(0, 999999):06d}"
    if builder == "de":
        return f"15{rng.choice('1279')}{rng.randint(0, 99999999):08d}"
    return f"{rng.choice('67')}{rng.randint(0, 99999999):08d}"


@functools.cache
def reference_companies() -> list[dict]:
    with open(COMPANY_LIST, newline="") as reference:
        return list(csv.DictReader(reference))


def build_population(seed: int, tenant: str, customers: int, days: int) -> Population:
    """Everything about `tenant` that does not depend on the day: deterministic in (seed, tenant)."""
    rng = random.Random(f"{seed}:{tenant}:population")
    known = reference_companies()
    companies = []
    for index in range(max(4, min(len(known), customers // 25))):
        if rng.random() < 0.9:  # most companies are in the tenant's reference …
            reference = known[rng.randrange(len(known))]
            name, domain = reference["company"], reference["domain"]
            industry, employees = reference["industry"], int(reference["employees"])
        else:  # … some are not, and must stay unenriched
            word = rng.choice(COMPANY_WORDS)
            name, domain = f"{word.title()} Startup {index}", f"{word}-startup{index}.io"
            industry, employees = rng.choice(INDUSTRIES), rng.choice((8, 40))
        if any(company.domain == domain for company in companies):
            continue
        companies.append(
            Company(
                account_id=f"001{_token(rng, 15)}",
                name=name,
                domain=domain,
                industry=industry,
                employees=employees,
                annual_revenue=rng.randrange(200_000, 900_000_000, 1000),
                country=rng.choices([c[0] for c in COUNTRIES], [c[1] for c in COUNTRIES])[0],
            )
        )
    products = []
    for index in range(200):
        product_type = rng.choice(PRODUCT_TYPES)
        products.append(
            Product(
                product_id=8_000_000_000 + index,
                variant_id=44_000_000_000 + index,
                sku=f"{product_type[:3].upper()}-{index:04d}",
                title=f"{rng.choice(COMPANY_WORDS).title()} {product_type[:-1] if product_type.endswith('s') else product_type}",
                product_type=product_type,
                price=round(rng.uniform(5, 400), 2),
            )
        )
    people = []
    weights = [c[1] for c in COUNTRIES]
    for index in range(customers):
        country, _, calling_code, builder, currency = rng.choices(COUNTRIES, weights)[0]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        b2b = rng.random() < 0.35
        company = rng.choice(companies) if b2b else None
        domain = company.domain if company else rng.choice(FREE_MAIL_DOMAINS)
        person = Person(
            person_id=f"p_{tenant}_{index:07d}",
            first_name=first.title(),
            last_name=last.title(),
            email=f"{first}.{last}{index}@{domain}",
            phone_national=_national_number(rng, builder),
            calling_code=calling_code,
            country=country,
            currency=currency,
            signup_day=0 if rng.random() < 0.4 else rng.randrange(days),
            company=company,
        )
        in_shop = rng.random() < 0.8
        if in_shop:
            person.shopify_customer_id = 6_000_000_000 + index * 7 + rng.randrange(7)
        if (in_shop and rng.random() < 0.7) or (not in_shop and rng.random() < 0.2):
            person.stripe_customer_id = f"cus_{_token(rng, 14)}"
        if b2b or rng.random() < 0.05:
            person.salesforce_contact_id = f"003{_token(rng, 15)}"
        if rng.random() < 0.7:
            person.app_user_id = f"u_{_token(rng, 12)}"
            person.anonymous_ids = [
                str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rng.randint(1, 3))
            ]
        people.append(person)
    return Population(tenant, people, companies, products)
