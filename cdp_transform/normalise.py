"""Normalisers: email, phone (E.164 with libphonenumber, the library phonenumbers ports), country
(ISO 3166 alpha-2 with pycountry) and timestamps (UTC). Each returns a Spark Column (the country, a
joined frame); none collects data to the driver."""

import functools

import pycountry
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_transform.local_frame import local_frame

# Names sources use that pycountry does not list.
COUNTRY_ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "england": "GB",
    "u.s.": "US",
    "u.s.a.": "US",
    "america": "US",
    "deutschland": "DE",
    "holland": "NL",
}


# What regex `\s` matches: space, tab, newline, vertical tab, form feed, carriage return.
WHITESPACE = " \t\n\x0b\f\r"


def strip(value: Column) -> Column:
    """Leading and trailing whitespace of any kind removed (Spark's trim only removes spaces); a
    character-set trim, several times cheaper per row than a regular expression."""
    return F.btrim(value, F.lit(WHITESPACE))


def email(column: str | Column) -> Column:
    """Trimmed and lower-cased; empty becomes null."""
    cleaned = F.lower(strip(F.col(column) if isinstance(column, str) else column))
    return F.when(cleaned == "", None).otherwise(cleaned)


@functools.cache
def country_names() -> dict[str, str]:
    """Every spelling pycountry knows (alpha-2, alpha-3, names), lower-cased, to alpha-2."""
    names = dict(COUNTRY_ALIASES)
    for country in pycountry.countries:
        for spelling in (
            country.alpha_2,
            country.alpha_3,
            country.name,
            getattr(country, "official_name", None),
            getattr(country, "common_name", None),
        ):
            if spelling:
                names[spelling.lower()] = country.alpha_2
    return names


def country_key(column: str | Column) -> Column:
    """A country spelling as `with_country` looks it up: trimmed and lower-cased."""
    return F.lower(strip(F.col(column) if isinstance(column, str) else column))


def with_country(frame: DataFrame, key: str, output: str) -> DataFrame:
    """Replaces column `key` (a `country_key`) by `output`: ISO 3166 alpha-2, or null when the value
    names no country. A broadcast join with every spelling (a literal map of them in the row
    expression made Spark's generated code too large and the lookup slow)."""
    names = local_frame(frame.sparkSession, sorted(country_names().items()), f"{key} string, {output} string")
    return frame.join(F.broadcast(names), key, "left").drop(key)


def phone(column: str | Column, region: str | Column) -> Column:
    """E.164 (`+14155550123`), reading national formats in the record's country; null when invalid.
    Google's libphonenumber in Spark's JVM (`cdp_e164`, registered on every session), at the version
    of Python's phonenumbers: in the JVM, not a pandas UDF, whose Python workers cost far more CPU
    per number (docs/performance.md)."""
    return F.call_function(
        "cdp_e164",
        F.col(column) if isinstance(column, str) else column,
        F.col(region) if isinstance(region, str) else region,
    )


def timestamp(column: str | Column) -> Column:
    """Epoch millis or seconds, ISO 8601 with Z or any offset, or naive `yyyy-MM-dd HH:mm:ss` (UTC)
    → a UTC timestamp; null when unreadable."""
    value = strip(F.col(column) if isinstance(column, str) else column)
    # Text first: Spark's timestamp parser reads at most six year digits, so it never takes an
    # epoch of nine or more digits, and the patterns are matched only where it gave up.
    epoch = F.when(value.rlike(r"^[0-9]{11,}$"), F.timestamp_millis(value.cast("long"))).when(
        value.rlike(r"^[0-9]{9,10}$"), F.timestamp_seconds(value.cast("long"))
    )
    return F.coalesce(F.try_to_timestamp(value), epoch)
