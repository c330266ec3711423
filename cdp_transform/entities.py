"""The curated entities, declared as data: which raw stream feeds each table, how its fields are
read and typed, its natural key, how versions are ordered, what enriches it and which quality
rules hold. `cdp_assets/curated.py` turns each spec into a Dagster asset."""

from dataclasses import dataclass, field

from cdp_resources.consent import PURPOSES
from cdp_transform.conform import Field
from cdp_transform.enrich import COMPANY_COLUMNS
from cdp_transform.lineage import LINEAGE
from cdp_transform.rules import CRITICAL, WARNING, Rule, email_format, not_before_earliest, not_null, typed_fields


@dataclass(frozen=True)
class EntitySpec:
    table: str
    provider: str
    stream: str
    read_schema: str  # Spark DDL: every leaf read as text, typed later by `fields`
    fields: list[Field]
    key: list[str]
    newest_first: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    description: str = ""
    explode: str | None = None  # one row per element of this raw array (order lines)
    company_from: str | None = None  # email column to enrich with company and industry
    usd: tuple[str, str, str] | None = None  # (amount, currency, output) converted at the day's rate
    email_unique_per: str | None = None  # flag emails shared by several of these ids (a warning)
    customer_must_exist: bool = False  # orders: customer_id must be in curated shopify_customers (a warning)
    reconciles: bool = True  # raw records = curated + dead-lettered + duplicates (not for exploded tables)
    categorical: tuple[
        str, ...
    ] = ()  # fields with few distinct values (currency, status): Parquet dictionary-encodes them
    # One row per (tenant, key) across every day, the newest version (cdp_transform/current_state.py);
    # else one per key and event day, as the hand-written tables (dbt picks their latest).
    current_state: bool = False
    pii: tuple[str, ...] = ()  # columns of personal data besides those PII_COLUMN_PATTERNS names (masked)

    @property
    def needs_fx(self) -> bool:
        return self.usd is not None

    @property
    def filter_columns(self) -> list[str]:
        """What queries filter on besides the day: the columns the table keeps Delta statistics on
        (data skipping) and Z-orders by."""
        return ["tenant_id", *self.key]

    @property
    def dictionary_columns(self) -> list[str]:
        """The curated columns with few distinct values: lineage, the categorical fields, the
        company enrichment. Parquet builds a dictionary for these only; for ids, timestamps,
        amounts and free text the dictionary overflows and is dropped, wasted work."""
        enriched = list(COMPANY_COLUMNS) if self.company_from else []
        return [*LINEAGE, *self.categorical, *enriched]


def _phone_valid(raw_field: str, column: str = "phone") -> Rule:
    return Rule(
        "phone_valid",
        f"{column} IS NOT NULL OR _raw_{raw_field} IS NULL",
        WARNING,
        "phone present but not a valid number for the record's country",
    )


def _category_preference(purpose: str) -> str:
    """The consent manager's choice for `purpose` in `context.consent.categoryPreferences`, whose
    category names the app's owner spells as they like: compared as letters only, case ignored
    ("Email Marketing", "email_marketing" and "EmailMarketing" are one purpose). Matched in the
    map's JSON text because a lambda over the map (`map_filter`) would take the whole projection
    out of Spark's generated code."""
    gap = '[^a-z"]*'  # anything but letters within the key
    pattern = f'(?i)"{gap}{gap.join(purpose.replace("_", ""))}{gap}":"([^"]*)"'
    return f"nullif(regexp_extract(to_json(context.consent.categoryPreferences), '{pattern}', 1), '')"


ADDRESS = "struct<city: string, country_code: string, country: string>"
CAMPAIGN_RESULT_TYPES = ("delivered", "opened", "clicked", "converted", "unsubscribed")

ENTITIES = [
    EntitySpec(
        "fx_rates",
        "fx",
        "rates",
        "date string, base string, currency string, rate string",
        [
            Field("rate_date", "date", "date"),
            Field("base", "base", "upper"),
            Field("currency", "currency", "upper"),
            Field("rate", "rate", "double"),
        ],
        key=["base", "currency"],
        categorical=("rate_date", "base", "currency"),
        rules=[
            typed_fields(),
            not_null("currency", "rate"),
            Rule("rate_positive", "rate > 0", CRITICAL, "rate must be > 0"),
        ],
        description="Daily FX rates (units of currency per USD), one row per currency and day.",
    ),
    EntitySpec(
        "shopify_customers",
        "shopify",
        "customers",
        f"id string, email string, first_name string, last_name string, phone string, created_at string, "
        f"updated_at string, accepts_marketing string, default_address {ADDRESS}, "
        f"sms_marketing_consent struct<state: string>",
        [
            Field("customer_id", "id", "bigint"),
            Field("email", "email", "email"),
            Field("first_name", "first_name"),
            Field("last_name", "last_name"),
            Field("country", "coalesce(default_address.country_code, default_address.country)", "country"),
            Field("phone", "phone", "phone", region="country"),
            Field("city", "default_address.city"),
            Field("accepts_marketing", "accepts_marketing", "boolean"),
            Field("sms_consent", "sms_marketing_consent.state"),
            Field("created_at", "created_at", "timestamp"),
            Field("updated_at", "updated_at", "timestamp"),
        ],
        key=["customer_id"],
        newest_first=["updated_at"],
        company_from="email",
        email_unique_per="customer_id",
        categorical=("country", "city", "accepts_marketing", "sms_consent"),
        rules=[
            typed_fields(),
            not_null("customer_id"),
            email_format(),
            _phone_valid("phone"),
            Rule("email_unique", "NOT _email_shared", WARNING, "the same email belongs to several customers"),
        ],
        description="Shopify customers, latest version per customer and day; email, E.164 phone and ISO country normalised, company by email domain.",
    ),
    EntitySpec(
        "stripe_customers",
        "stripe",
        "customers",
        "id string, email string, name string, phone string, created string, address struct<country: string>",
        [
            Field("customer_id", "id"),
            Field("email", "email", "email"),
            Field("name", "name"),
            Field("country", "address.country", "country"),
            Field("phone", "phone", "phone", region="country"),
            Field("created_at", "created", "timestamp"),
        ],
        key=["customer_id"],
        newest_first=["created_at"],
        company_from="email",
        email_unique_per="customer_id",
        categorical=("country",),
        rules=[
            typed_fields(),
            not_null("customer_id"),
            email_format(),
            _phone_valid("phone"),
            Rule("email_unique", "NOT _email_shared", WARNING, "the same email belongs to several customers"),
        ],
        description="Stripe customers, normalised and enriched like the Shopify ones.",
    ),
    EntitySpec(
        "accounts",
        "salesforce",
        "accounts",
        "Id string, Name string, Website string, Industry string, NumberOfEmployees string, AnnualRevenue string, "
        "BillingCountry string, CreatedDate string, LastModifiedDate string",
        [
            Field("account_id", "Id"),
            Field("name", "Name"),
            Field("domain", r"regexp_replace(lower(Website), '^(https?://)?(www\\.)?', '')"),
            Field("industry", "Industry"),
            Field("employees", "NumberOfEmployees", "bigint"),
            Field("annual_revenue", "AnnualRevenue", "decimal"),
            Field("country", "BillingCountry", "country"),
            Field("created_at", "CreatedDate", "timestamp"),
            Field("updated_at", "LastModifiedDate", "timestamp"),
        ],
        key=["account_id"],
        newest_first=["updated_at"],
        categorical=("industry", "country"),
        rules=[
            typed_fields(),
            not_null("account_id"),
            Rule(
                "revenue_in_range",
                "annual_revenue IS NULL OR annual_revenue BETWEEN 0 AND 1000000000000",
                WARNING,
                "annual revenue outside 0 … 1e12",
            ),
        ],
        description="Salesforce accounts (companies).",
    ),
    EntitySpec(
        "contacts",
        "salesforce",
        "contacts",
        "Id string, AccountId string, FirstName string, LastName string, Email string, Phone string, "
        "MailingCountry string, CreatedDate string, LastModifiedDate string, HasOptedOutOfEmail string",
        [
            Field("contact_id", "Id"),
            Field("account_id", "AccountId"),
            Field("first_name", "FirstName"),
            Field("last_name", "LastName"),
            Field("email", "Email", "email"),
            Field("country", "MailingCountry", "country"),
            Field("phone", "Phone", "phone", region="country"),
            Field("email_opt_out", "HasOptedOutOfEmail", "boolean"),
            Field("created_at", "CreatedDate", "timestamp"),
            Field("updated_at", "LastModifiedDate", "timestamp"),
        ],
        key=["contact_id"],
        newest_first=["updated_at"],
        company_from="email",
        categorical=("country",),
        rules=[typed_fields(), not_null("contact_id"), email_format(), _phone_valid("Phone")],
        description="Salesforce contacts (people at accounts), normalised and enriched.",
    ),
    EntitySpec(
        "opportunities",
        "salesforce",
        "opportunities",
        "Id string, AccountId string, Name string, StageName string, Amount string, CurrencyIsoCode string, "
        "CloseDate string, CreatedDate string, LastModifiedDate string",
        [
            Field("opportunity_id", "Id"),
            Field("account_id", "AccountId"),
            Field("name", "Name"),
            Field("stage", "StageName"),
            Field("amount", "Amount", "decimal"),
            Field("currency", "CurrencyIsoCode", "upper"),
            Field("close_date", "CloseDate", "date"),
            Field("created_at", "CreatedDate", "timestamp"),
            Field("updated_at", "LastModifiedDate", "timestamp"),
        ],
        key=["opportunity_id"],
        newest_first=["updated_at"],
        usd=("amount", "currency", "amount_usd"),
        categorical=("stage", "currency"),
        rules=[
            typed_fields(),
            not_null("opportunity_id"),
            Rule("amount_not_negative", "amount IS NULL OR amount >= 0", WARNING, "negative opportunity amount"),
        ],
        description="Salesforce opportunities with amounts in USD.",
    ),
    EntitySpec(
        "orders",
        "shopify",
        "orders",
        "id string, order_number string, email string, customer struct<id: string>, created_at string, "
        "currency string, total_price string, financial_status string",
        [
            Field("order_id", "id", "bigint"),
            Field("order_number", "order_number", "bigint"),
            Field("customer_id", "customer.id", "bigint"),
            Field("email", "email", "email"),
            Field("ordered_at", "created_at", "timestamp"),
            Field("currency", "currency", "upper"),
            Field("total", "total_price", "decimal"),
            Field("financial_status", "financial_status"),
        ],
        key=["order_id"],
        newest_first=["ordered_at"],
        usd=("total", "currency", "total_usd"),
        customer_must_exist=True,
        categorical=("currency", "financial_status"),
        rules=[
            typed_fields(),
            not_null("order_id", "ordered_at"),
            Rule("order_total_positive", "total > 0", CRITICAL, "order total must be > 0"),
            not_before_earliest("order_date_min", "ordered_at", "order date"),
            Rule(
                "customer_exists",
                "customer_id IS NULL OR _customer_known",
                WARNING,
                "the order's customer is not in shopify_customers",
            ),
            email_format(severity=WARNING),
        ],
        description="Shopify orders with totals in USD at the day's rate.",
    ),
    EntitySpec(
        "order_lines",
        "shopify",
        "orders",
        "id string, created_at string, currency string, "
        "line_items array<struct<id: string, product_id: string, variant_id: string, sku: string, quantity: string, price: string>>",
        [
            Field("line_id", "line.id", "bigint"),
            Field("order_id", "id", "bigint"),
            Field("product_id", "line.product_id", "bigint"),
            Field("variant_id", "line.variant_id", "bigint"),
            Field("sku", "line.sku"),
            Field("quantity", "line.quantity", "bigint"),
            Field("price", "line.price", "decimal"),
            Field("currency", "currency", "upper"),
            Field("ordered_at", "created_at", "timestamp"),
        ],
        key=["line_id"],
        explode="line_items",
        usd=("price", "currency", "price_usd"),
        reconciles=False,
        categorical=("product_id", "variant_id", "sku", "currency"),
        rules=[
            typed_fields(),
            not_null("line_id", "order_id"),
            Rule("quantity_positive", "quantity > 0", CRITICAL, "quantity must be > 0"),
        ],
        description="Shopify order lines (one row per line item) with prices in USD.",
    ),
    EntitySpec(
        "products",
        "shopify",
        "products",
        "id string, title string, product_type string, vendor string, created_at string, updated_at string, "
        "variants array<struct<id: string, sku: string, price: string>>",
        [
            Field("product_id", "id", "bigint"),
            Field("title", "title"),
            Field("product_type", "product_type"),
            Field("vendor", "vendor"),
            Field("sku", "variants[0].sku"),
            Field("price", "variants[0].price", "decimal"),
            Field("created_at", "created_at", "timestamp"),
            Field("updated_at", "updated_at", "timestamp"),
        ],
        key=["product_id"],
        newest_first=["updated_at"],
        categorical=("product_type", "vendor"),
        rules=[
            typed_fields(),
            not_null("product_id"),
            Rule("price_not_negative", "price IS NULL OR price >= 0", WARNING, "negative price"),
        ],
        description="Shopify products (first variant's SKU and price), latest version per day.",
    ),
    EntitySpec(
        "payments",
        "stripe",
        "charges",
        "id string, amount string, currency string, customer string, status string, created string, "
        "billing_details struct<email: string, phone: string>, metadata struct<order_id: string>",
        [
            Field("payment_id", "id"),
            Field("customer_id", "customer"),
            Field("amount", "amount", "cents"),
            Field("currency", "currency", "upper"),
            Field("status", "status"),
            Field("paid_at", "created", "timestamp"),
            Field("billing_email", "billing_details.email", "email"),
            Field("order_id", "metadata.order_id", "bigint"),
        ],
        key=["payment_id"],
        newest_first=["paid_at"],
        usd=("amount", "currency", "amount_usd"),
        categorical=("currency", "status"),
        rules=[
            typed_fields(),
            not_null("payment_id", "paid_at"),
            Rule("amount_positive", "amount > 0", CRITICAL, "payment amount must be > 0"),
            email_format("billing_email", WARNING),
        ],
        description="Stripe charges with amounts (from minor units) in USD.",
    ),
    EntitySpec(
        "events",
        "app",
        "events",
        "message_id string, type string, event string, user_id string, anonymous_id string, timestamp string, "
        "properties map<string,string>, traits struct<email: string, phone: string>, "
        "context struct<consent: struct<categoryPreferences: map<string,string>>>",
        [
            Field("message_id", "message_id"),
            Field("type", "type"),
            Field("event", "event"),
            Field("user_id", "user_id"),
            Field("anonymous_id", "anonymous_id"),
            Field("event_ts", "timestamp", "timestamp"),
            Field("page_url", "properties['url']"),
            Field("product_id", "properties['product_id']", "bigint"),
            Field("revenue", "properties['revenue']", "decimal"),
            Field("currency", "properties['currency']", "upper"),
            Field("order_id", "properties['order_id']", "bigint"),
            Field("trait_email", "traits.email", "email"),
            Field("trait_phone", "traits.phone"),
            *(Field(f"consent_{purpose}", _category_preference(purpose), "boolean") for purpose in PURPOSES),
        ],
        key=["message_id"],
        categorical=("type", "event", "product_id", "currency"),
        rules=[
            typed_fields(),
            not_null("message_id", "event_ts"),
            Rule(
                "identified",
                "user_id IS NOT NULL OR anonymous_id IS NOT NULL",
                CRITICAL,
                "neither user_id nor anonymous_id",
            ),
            Rule(
                "user_id_present",
                "user_id IS NOT NULL OR type = 'track' AND event = 'page_view'",
                WARNING,
                "a cart, checkout, purchase or identify event without user_id",
            ),
        ],
        description="App events, one row per event (at-least-once duplicates removed), timestamps in UTC.",
    ),
    EntitySpec(
        "campaign_results",
        "campaigns",
        "results",
        "event_id string, campaign_id string, destination string, segment string, cdp_customer_id string, "
        "email_sha256 string, event_type string, occurred_at string",
        [
            Field("event_id", "event_id"),
            Field("campaign_id", "campaign_id"),
            Field("destination", "destination"),
            Field("segment", "segment"),
            Field("cdp_customer_id", "cdp_customer_id"),
            Field("email_sha256", "lower(trim(email_sha256))"),
            Field("event_type", "lower(trim(event_type))"),
            Field("occurred_at", "occurred_at", "timestamp"),
        ],
        key=["event_id"],
        newest_first=["occurred_at"],
        categorical=("campaign_id", "destination", "segment", "event_type"),
        rules=[
            typed_fields(),
            not_null("event_id", "campaign_id", "segment", "occurred_at"),
            Rule(
                "event_type_known",
                f"event_type IN {CAMPAIGN_RESULT_TYPES}",
                CRITICAL,
                f"event_type must be one of {', '.join(CAMPAIGN_RESULT_TYPES)}",
            ),
        ],
        description="Campaign results fed back by the destinations (delivered, opened, clicked, converted, unsubscribed), "
        "one row per result event, by the segment the campaign was sent to.",
    ),
]

BY_TABLE = {spec.table: spec for spec in ENTITIES}
