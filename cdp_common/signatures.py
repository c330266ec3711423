"""Signature checks on the raw request body, with constant-time comparison.

- Shopify: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, body)). The signature carries no
  time, so staleness is judged from `X-Shopify-Triggered-At`.
- Timestamped (Stripe's `Stripe-Signature`, and custom apps' `X-CDP-Signature`):
  `t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`, several `v1` allowed (secret
  rotation); rejected when `t` is more than the tolerance away from now (replay protection).
"""

import base64
import hashlib
import hmac
from datetime import datetime


class Unauthentic(Exception):
    """The request cannot be shown to come from the provider: 401, nothing stored."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _ascii(value: str) -> bytes:
    return value.strip().encode("latin-1", "replace")


def shopify_signature(secret: bytes, body: bytes) -> str:
    return base64.b64encode(hmac.digest(secret, body, hashlib.sha256)).decode()


def verify_shopify(headers, body: bytes, secret: bytes, now: float, tolerance: float) -> None:
    given = headers.get("x-shopify-hmac-sha256")
    if not given:
        raise Unauthentic("missing_signature", "X-Shopify-Hmac-Sha256 header is missing")
    if not hmac.compare_digest(shopify_signature(secret, body).encode(), _ascii(given)):
        raise Unauthentic("bad_signature", "X-Shopify-Hmac-Sha256 does not match the body")
    triggered = headers.get("x-shopify-triggered-at")
    if not triggered:
        raise Unauthentic("missing_timestamp", "X-Shopify-Triggered-At header is missing")
    try:
        moment = datetime.fromisoformat(triggered.strip())  # any number of fraction digits (Shopify sends 9)
        seconds = moment.timestamp() if moment.tzinfo else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise Unauthentic("bad_timestamp", "X-Shopify-Triggered-At is not an ISO 8601 time with an offset")
    if abs(now - seconds) > tolerance:
        raise Unauthentic("stale_timestamp", f"X-Shopify-Triggered-At is more than {tolerance:.0f}s from now")


def timestamped_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_timestamped(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value a sender puts in `Stripe-Signature` / `X-CDP-Signature`."""
    return f"t={timestamp},v1={timestamped_signature(secret, timestamp, body)}"


def verify_timestamped(header: str | None, name: str, body: bytes, secret: bytes, now: float, tolerance: float) -> None:
    if not header:
        raise Unauthentic("missing_signature", f"{name} header is missing")
    pairs = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value.strip() for key, value in pairs if key.strip() == "t"]
    candidates = [_ascii(value) for key, value in pairs if key.strip() == "v1"]
    if (
        len(timestamps) != 1
        or not (timestamps[0].isascii() and timestamps[0].isdigit() and len(timestamps[0]) <= 12)
        or not candidates
    ):
        raise Unauthentic("malformed_signature", f"{name} must be t=<unix seconds>,v1=<hex HMAC-SHA256>")
    expected = timestamped_signature(secret, int(timestamps[0]), body).encode()
    matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]  # compare all: no early exit
    if not any(matches):
        raise Unauthentic("bad_signature", f"no v1 signature in {name} matches the body")
    if abs(now - int(timestamps[0])) > tolerance:
        raise Unauthentic("stale_timestamp", f"{name} timestamp is more than {tolerance:.0f}s from now")
