"""Identifiers normalised and hashed the way ad platforms match them.

- Email: leading and trailing whitespace removed, lower-cased, then SHA-256 as lower-case hex.
  Google Customer Match ("Take out any whitespace … Make all string values lowercase … hash with
  SHA256", https://developers.google.com/display-video/api/guides/tasks/upload-customer-match-audience/prepare-data)
  and Meta ("Trim any leading and trailing spaces. Convert all characters to lowercase.",
  https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters).
- Phone: E.164 with its country code (Google: "Format phone number value using the E.164 format.
  Include the country code."), written as digits only, without '+' (Meta: "Remove symbols, letters,
  and any leading zeros … must include a country code", e.g. US (650)555-1212 → 16505551212), then
  SHA-256 hex. A number without a '+' is read in the customer's country; one that does not parse
  to a valid number has no hash rather than a hash that can never match.
"""

import hashlib

import phonenumbers


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalise_email(email: str | None) -> str | None:
    value = (email or "").strip().lower()
    return value if "@" in value else None


def normalise_phone(phone: str | None, country: str | None = None) -> str | None:
    """E.164 digits without '+', e.g. '16505551212'; None when not a valid number."""
    if not phone or not phone.strip():
        return None
    try:
        number = phonenumbers.parse(phone, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def hashed_email(email: str | None) -> str | None:
    normalised = normalise_email(email)
    return sha256_hex(normalised) if normalised else None


def hashed_phone(phone: str | None, country: str | None = None) -> str | None:
    normalised = normalise_phone(phone, country)
    return sha256_hex(normalised) if normalised else None
