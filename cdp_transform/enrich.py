"""Enrichment: company and industry by email domain (reference table kept in the repository,
free-mail domains excluded) and amounts in USD at the day's FX rate."""

import csv
import functools
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp_transform.local_frame import local_frame

REFERENCE_DIR = Path(__file__).parent / "reference"


@functools.cache
def _reference(name: str) -> tuple[dict, ...]:
    with open(REFERENCE_DIR / name, newline="") as handle:
        return tuple(csv.DictReader(handle))


def free_mail_domains() -> set[str]:
    return {row["domain"] for row in _reference("free_mail_domains.csv")}


COMPANY_COLUMNS = ("email_domain", "is_free_mail", "company_name", "industry", "company_employees")


def company_by_domain(frame: DataFrame, email_column: str) -> DataFrame:
    """Adds `COMPANY_COLUMNS`: email_domain, is_free_mail, company_name, industry and
    company_employees (null when unknown)."""
    companies = local_frame(
        frame.sparkSession,
        [(r["domain"], r["company"], r["industry"], int(r["employees"])) for r in _reference("company_domains.csv")],
        "email_domain string, company_name string, industry string, company_employees int",
    )
    domain = F.lower(F.substring_index(F.col(email_column), "@", -1))
    with_domain = frame.withColumn("email_domain", F.when(F.col(email_column).contains("@"), domain))
    with_domain = with_domain.withColumn("is_free_mail", F.col("email_domain").isin(sorted(free_mail_domains())))
    return with_domain.join(F.broadcast(companies), "email_domain", "left")


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
