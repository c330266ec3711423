"""The suppression list: people who asked to be forgotten, as salted hashes of their identifiers.

`privacy/{tenant}/suppression.json` holds HMAC-SHA256 digests of the identifier keys
(`cdp_common.identifiers`) of every forgotten person of the tenant, never the values. Every entry
to the raw zone (the raw batch writer the Singer target, file drops, webhooks and reprocessing
share) drops a record whose identifiers hash into the list, and counts it.

The salt (the HMAC key) is `CDP_SUPPRESSION_SALT`, or else a random one kept in the state
directory (`suppression.salt`, created on first use): without it the digests of phone numbers,
a small space, cannot be recomputed by someone holding only the lake.
"""

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable

from cdp_common.identifiers import record_keys
from cdp_resources.settings import state_dir


def suppression_key(tenant: str) -> str:
    return f"privacy/{tenant}/suppression.json"


def salt() -> bytes:
    configured = os.environ.get("CDP_SUPPRESSION_SALT")
    if configured:
        return configured.encode()
    path = state_dir() / "suppression.salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x") as out:  # two first users: one writes, the other reads its salt
                os.chmod(path, 0o600)
                out.write(secrets.token_hex(32))
        except FileExistsError:
            pass
    return path.read_text().strip().encode()


def digest(tenant: str, key: str, secret: bytes) -> str:
    return hmac.new(secret, f"{tenant}\x00{key}".encode(), hashlib.sha256).hexdigest()


class SuppressionList:
    """One tenant's suppression list as read from the lake."""

    def __init__(self, lake, tenant: str):
        self.lake, self.tenant, self._secret = lake, tenant, salt()
        key = suppression_key(tenant)
        self.digests: set[str] = set(json.loads(lake.read_bytes(key))["digests"]) if lake.list(key) else set()

    def suppresses(self, provider: str, stream: str, record: object) -> bool:
        """Whether a raw record of `provider/stream` carries an identifier of a forgotten person."""
        if not self.digests:
            return False
        return any(
            digest(self.tenant, key, self._secret) in self.digests for key in record_keys(provider, stream, record)
        )

    def add(self, keys: Iterable[str]) -> int:
        """Add a person's identifier keys and publish the list; returns how many digests were new."""
        new = {digest(self.tenant, key, self._secret) for key in keys} - self.digests
        if new:
            self.digests |= new
            body = json.dumps({"tenant": self.tenant, "digests": sorted(self.digests)}, indent=0)
            self.lake.write_bytes(suppression_key(self.tenant), body.encode())
        return len(new)
