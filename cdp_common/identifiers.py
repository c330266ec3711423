"""A person's identifiers as erasure and suppression match them, in raw records and in tables.

Every identifier becomes a key `kind:value` with one normalisation per kind, so a raw record's
`" Alice@Example.COM "` and the identity map's `alice@example.com` meet, and so do the phone
`(650) 555-1212` typed in a shop and the E.164 `+16505551212` the map keeps:

- email: trimmed, lower-cased (also as its SHA-256, the form campaign results carry);
- phone: digits only without leading zeros; a person's phone gives both its E.164 digits and
  its national number, so a number typed with or without its country code matches (and the
  SHA-256 of its E.164 digits, the form audience exports carry);
- every other identifier (source ids, app and anonymous ids, `cdp_customer_id`): as text, trimmed.
"""

import hashlib
import re
from collections.abc import Iterable

import phonenumbers

EMAIL, EMAIL_SHA256, PHONE, PHONE_SHA256, ID = "email", "email_sha256", "phone", "phone_sha256", "id"
MIN_PHONE_DIGITS = 6  # shorter digit runs are not phone numbers (and would match too much)

# Where the raw records of each (provider, stream) carry a person's identifiers: dotted path -> kind.
# Streams not listed (fx rates, products, accounts, opportunities) hold no one's identifiers.
RAW_IDENTIFIERS: dict[tuple[str, str], dict[str, str]] = {
    ("shopify", "customers"): {"id": ID, "email": EMAIL, "phone": PHONE},
    ("shopify", "orders"): {"customer.id": ID, "email": EMAIL},
    ("stripe", "customers"): {"id": ID, "email": EMAIL, "phone": PHONE},
    ("stripe", "charges"): {"customer": ID, "billing_details.email": EMAIL, "billing_details.phone": PHONE},
    ("salesforce", "contacts"): {"Id": ID, "Email": EMAIL, "Phone": PHONE},
    ("app", "events"): {"user_id": ID, "anonymous_id": ID, "traits.email": EMAIL, "traits.phone": PHONE},
    ("campaigns", "results"): {"cdp_customer_id": ID, "email_sha256": EMAIL_SHA256},
}


def phone_digits(value: str) -> str:
    return re.sub(r"\D", "", value).lstrip("0")


def value_keys(kind: str, value: object) -> list[str]:
    """The keys of one value found in a record's field of `kind` (none for empty or non-scalar values)."""
    if value is None or isinstance(value, (bool, dict, list)):
        return []
    text = str(value).strip()
    if not text:
        return []
    if kind in (EMAIL, EMAIL_SHA256, PHONE_SHA256):
        return [f"{kind}:{text.lower()}"]
    if kind == PHONE:
        digits = phone_digits(text)
        return [f"{PHONE}:{digits}"] if len(digits) >= MIN_PHONE_DIGITS else []
    return [f"{ID}:{text}"]


def identifier_keys(id_type: str, value: str) -> list[str]:
    """The keys of a person's identifier of `id_type` (an identity-map type, e.g. `email`, `phone`,
    `shopify_customer_id`): an email also as its SHA-256, a phone also as its national number."""
    text = str(value).strip()
    if id_type == EMAIL:
        email = text.lower()
        return [f"{EMAIL}:{email}", f"{EMAIL_SHA256}:{hashlib.sha256(email.encode()).hexdigest()}"]
    if id_type == PHONE:
        keys = value_keys(PHONE, text)
        try:
            number = phonenumbers.parse(text if text.startswith("+") else f"+{text}")
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
            keys += value_keys(PHONE, str(number.national_number))
            keys.append(f"{PHONE_SHA256}:{hashlib.sha256(e164.encode()).hexdigest()}")
        except phonenumbers.NumberParseException:
            pass  # not international: its digits are all there is to match
        return keys
    return value_keys(ID, text)


def _at(record: object, path: str) -> object:
    for part in path.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


def record_keys(provider: str, stream: str, record: object) -> set[str]:
    """The identifier keys a raw record of `provider/stream` carries."""
    if not isinstance(record, dict):
        return set()
    fields = RAW_IDENTIFIERS.get((provider, stream), {})
    return {key for path, kind in fields.items() for key in value_keys(kind, _at(record, path))}


def scalars(value: object) -> Iterable[str]:
    """Every scalar of a nested value as text (for records whose layout is not a raw stream's)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from scalars(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def any_value_keys(value: object) -> set[str]:
    """Keys of every scalar in `value` read as each kind: for activation's batches and dead letters,
    whose fields are not a raw stream's. Phones only from values that look like one."""
    keys = set()
    for text in scalars(value):
        keys.update(value_keys(EMAIL, text) + value_keys(EMAIL_SHA256, text) + value_keys(PHONE_SHA256, text))
        if not text.strip().isdigit():  # counts and amounts are no one's id
            keys.update(value_keys(ID, text))
        if re.fullmatch(r"\+?[\d\s().-]+", text.strip()):
            keys.update(value_keys(PHONE, text))
    return keys
