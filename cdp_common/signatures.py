"""The webhook signing schemes, checked on the raw request body with constant-time comparison.

- Shopify: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, body)). The signature covers the
  body only, so it proves where the body came from, never when: `X-Shopify-Triggered-At` and
  `X-Shopify-Event-Id` can be changed by whoever replays a captured request, and Shopify itself
  retries a failed delivery for hours with the original trigger time. So there is no time check:
  a late retry or a delivery without that header is accepted, and replays are caught by the
  receiver's de-duplication on the body's hash (as well as the event id).
- Timestamped (Stripe's `Stripe-Signature`, and custom apps' `X-CDP-Signature`):
  `t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`, several `v1` allowed (secret
  rotation). Here `t` is signed, so a request whose `t` is more than the tolerance away from now
  is refused: that is the replay protection. Stripe signs every retry afresh, so its retries pass;
  a sender of the app scheme must likewise sign each attempt when it sends it (a retry carrying a
  signature older than the tolerance gets 401 `stale_timestamp` and must be signed again).

Signing lives here too: activation signs its HTTP deliveries with the app scheme.
"""

import base64
import hashlib
import hmac


class Unauthentic(Exception):
    """The request cannot be shown to come from the provider: 401, nothing stored."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _ascii(value: str) -> bytes:
    return value.strip().encode("latin-1", "replace")


def shopify_signature(secret: bytes, body: bytes) -> str:
    return base64.b64encode(hmac.digest(secret, body, hashlib.sha256)).decode()


def verify_shopify(headers, body: bytes, secret: bytes) -> None:
    given = headers.get("x-shopify-hmac-sha256")
    if not given:
        raise Unauthentic("missing_signature", "X-Shopify-Hmac-Sha256 header is missing")
    if not hmac.compare_digest(shopify_signature(secret, body).encode(), _ascii(given)):
        raise Unauthentic("bad_signature", "X-Shopify-Hmac-Sha256 does not match the body")


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
