"""Who a forget request is about: the request's identifier resolved through the identity map to
every identifier of the person's profile (and of the profiles merged into it).

An identifier the map does not know (a person seen only in records not yet resolved, or only
through an excluded identifier) is forgotten on its own. Identifiers the map excludes as shared
or blocked never join a profile, so they are not the person's to erase: records that carry them
go only when they also carry one of the person's own identifiers.
"""

from dataclasses import dataclass, field

import phonenumbers
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp_common.identifiers import EMAIL, PHONE, identifier_keys
from cdp_resources.delta_tables import read_delta
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import MAP, MERGES

CUSTOMER_ID = "cdp_customer_id"  # the request kind `--customer-id`: the platform's own id of the profile


class UnknownIdentifier(ValueError):
    """A request's identifier that cannot be read (an email without @, a phone that is no number)."""


@dataclass
class Person:
    tenant: str
    identifiers: set[tuple[str, str]] = field(default_factory=set)  # (id_type, id_value as the map keeps it)
    customer_ids: set[str] = field(default_factory=set)
    node_ids: set[int] = field(default_factory=set)

    @property
    def keys(self) -> set[str]:
        """The identifier keys (`cdp_common.identifiers`) that match this person's records."""
        keys = {key for id_type, value in self.identifiers for key in identifier_keys(id_type, value)}
        return keys | {key for value in self.customer_ids for key in identifier_keys(CUSTOMER_ID, value)}

    def values(self, kind: str) -> list[str]:
        """The person's values of one key kind (email, email_sha256, phone, id), sorted."""
        return sorted(key.split(":", 1)[1] for key in self.keys if key.split(":", 1)[0] == kind)

    def join(self, other: "Person") -> "Person":
        """Both people at once (the requests of one tenant are erased in one pass)."""
        return Person(
            self.tenant,
            self.identifiers | other.identifiers,
            self.customer_ids | other.customer_ids,
            self.node_ids | other.node_ids,
        )

    @property
    def map_values(self) -> list[str]:
        """Every identifier value as the identity tables store them."""
        return sorted({value for _, value in self.identifiers} | self.customer_ids)


def normalised(id_type: str, value: str) -> str:
    """A request's identifier as the identity map stores its type: emails trimmed and lower-cased,
    phones in E.164 (a number without + must carry its country code)."""
    value = value.strip()
    if id_type == EMAIL:
        if "@" not in value:
            raise UnknownIdentifier("the email of a forget request has no @")
        return value.lower()
    if id_type == PHONE:
        try:
            number = phonenumbers.parse(value if value.startswith("+") else f"+{value.lstrip('0')}")
        except phonenumbers.NumberParseException:
            raise UnknownIdentifier("the phone of a forget request is not an international number") from None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not value:
        raise UnknownIdentifier(f"the {id_type} of a forget request is empty")
    return value


def resolve(spark: SparkSession, lake: LakeResource, tenant: str, id_type: str, value: str) -> Person:
    """The person `id_type`/`value` names in `tenant`, with every identifier of their profile."""
    value = normalised(id_type, value)
    person = Person(tenant)
    identity = read_delta(spark, lake, MAP)
    if identity is None:  # nothing resolved yet: the identifier is all there is
        person.identifiers.add((id_type, value))
        return person
    identity = identity.where(F.col("tenant_id") == tenant)
    if id_type == CUSTOMER_ID:
        profiles = {value}
    else:
        named = identity.where((F.col("id_type") == id_type) & (F.col("id_value") == value))
        profiles = {row.cdp_customer_id for row in named.select(CUSTOMER_ID).distinct().collect()}
    if not profiles:
        if id_type == CUSTOMER_ID:
            person.customer_ids.add(value)
        else:
            person.identifiers.add((id_type, value))
        return person
    merges = read_delta(spark, lake, MERGES)
    if merges is not None:  # ids of profiles merged into this one: the person's too
        merged = merges.where((F.col("tenant_id") == tenant) & F.col("surviving_id").isin(sorted(profiles)))
        profiles |= {row.cdp_customer_id for row in merged.select(CUSTOMER_ID).distinct().collect()}
    person.customer_ids |= profiles
    for row in (
        identity.where(F.col(CUSTOMER_ID).isin(sorted(profiles))).select("id_type", "id_value", "node_id").collect()
    ):
        person.identifiers.add((row.id_type, row.id_value))
        person.node_ids.add(row.node_id)
    return person
