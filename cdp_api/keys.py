"""API keys and the database roles they read as.

A key belongs to one tenant and has scopes: `profiles` (lookups by non-personal identifiers,
timelines, segments, explanations; personal values masked) and `pii` (personal values unmasked,
lookups by email or phone, search). Keys are `cdp_<key id>_<secret>`: the secret is 32 random
bytes, so a plain SHA-256 of it (no slow password hash) cannot be brute-forced and is looked up by
key id in constant time; only the hash is stored.

The API server logs in as `cdp_api`, which holds no privilege and maps to no tenant. For each
request it takes on (`SET LOCAL ROLE`) one of the key's tenant roles, `cdp_api_<hash of the
tenant>` (a member of `cdp_tenant_reader`) or its `_pii` twin (of `cdp_tenant_pii`), which
`cdp_security.tenant_roles` maps to that tenant alone: the row-level security policies and masked
views of docs/security.md decide what it reads, not the API's code.
"""

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.settings import state_dir
from cdp_resources.warehouse_security import (
    PII_GROUP,
    READER_GROUP,
    check_tenant_name,
    ensure_roles,
    ensure_security_as_owner,
)

LOGIN_ROLE = "cdp_api"
KEYS_TABLE = "cdp_api_keys.keys"
SCOPES = ("profiles", "pii")
DEFAULT_RATE = 100  # requests per second per key, Segment's Profile API's limit per space
KEY_PREFIX = "cdp"
KEY_CACHE_SECONDS = 10.0  # the API keeps a checked key this long: a revoked key stops working within it


class ApiKeyError(ValueError):
    """A key command that cannot be carried out (bad tenant, scope or key id)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    rate_per_second: int

    @property
    def pii(self) -> bool:
        return "pii" in self.scopes

    @property
    def role(self) -> str:
        return tenant_role(self.tenant_id, self.pii)


def tenant_role(tenant: str, pii: bool) -> str:
    """The tenant's API role: a hash keeps it short (tenant names may be 63 characters, PostgreSQL's limit)."""
    return f"{LOGIN_ROLE}_{hashlib.sha256(tenant.encode()).hexdigest()[:16]}" + ("_pii" if pii else "")


def password_file() -> Path:
    return state_dir() / "api" / "postgres_password"


def api_database_url() -> str:
    """The API's connection: `CDP_API_POSTGRES_URL`, else the embedded `cdp` database as `cdp_api`
    with the password `cdp api keys create` wrote under .cdp/api."""
    if url := os.environ.get("CDP_API_POSTGRES_URL"):
        return url
    if not password_file().exists():
        raise ApiKeyError("no API role yet: create a key first (`cdp api keys create <tenant>`)")
    url = EmbeddedPostgres.default().start().url("cdp", LOGIN_ROLE)
    return make_conninfo(url, password=password_file().read_text().strip())


_KEYS_SETUP = """
CREATE SCHEMA IF NOT EXISTS cdp_api_keys;
CREATE TABLE IF NOT EXISTS cdp_api_keys.keys (
    key_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    scopes text[] NOT NULL,
    rate_per_second integer NOT NULL,
    secret_sha256 bytea NOT NULL,
    label text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
COMMENT ON TABLE cdp_api_keys.keys IS 'The profile API''s keys (cdp api keys): hashed secrets, scopes, rate limits.';
"""


def ensure_login_role(admin: psycopg.Connection, password: str | None = None) -> str | None:
    """`cdp_api` (NOINHERIT: it holds its tenant roles' privileges only after SET ROLE). Returns the
    password it set: a new one when the role is new or the embedded password file is missing."""
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN_ROLE,)).fetchone()
    if exists and password is None and password_file().exists():
        return None
    password = password or secrets.token_urlsafe(24)
    statement = "ALTER ROLE {} LOGIN NOINHERIT PASSWORD {}" if exists else "CREATE ROLE {} LOGIN NOINHERIT PASSWORD {}"
    admin.execute(sql.SQL(statement).format(sql.Identifier(LOGIN_ROLE), sql.Literal(password)))
    return password


def ensure_tenant_roles(admin: psycopg.Connection, tenant: str) -> None:
    """The tenant's two API roles, mapped to the tenant in `cdp_security.tenant_roles`, and the keys
    table. As a role that may create roles (the embedded superuser); idempotent."""
    check_tenant_name(tenant)
    ensure_roles(admin)
    ensure_security_as_owner(admin)
    existing = {row[0] for row in admin.execute("SELECT rolname FROM pg_roles").fetchall()}
    for pii in (False, True):
        role = tenant_role(tenant, pii)
        if role not in existing:
            admin.execute(
                # INHERIT: the column grants it reads with are its group's.
                sql.SQL("CREATE ROLE {} NOLOGIN INHERIT IN ROLE {}").format(
                    sql.Identifier(role), sql.Identifier(PII_GROUP if pii else READER_GROUP)
                )
            )
        admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(LOGIN_ROLE)))
        admin.execute(
            "INSERT INTO cdp_security.tenant_roles (role_name, tenant_id, pii) VALUES (%s, %s, %s) "
            "ON CONFLICT (role_name, tenant_id) DO UPDATE SET pii = excluded.pii",
            (role, tenant, pii),
        )
    (owner,) = admin.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    admin.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
    try:
        admin.execute(_KEYS_SETUP)
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA cdp_api_keys TO {}").format(sql.Identifier(LOGIN_ROLE)))
        admin.execute(sql.SQL("GRANT SELECT ON cdp_api_keys.keys TO {}").format(sql.Identifier(LOGIN_ROLE)))
    finally:
        admin.execute("RESET ROLE")
    _trigram_search_under_rls(admin)


def _trigram_search_under_rls(admin: psycopg.Connection) -> None:
    """Under row-level security PostgreSQL uses a caller's condition in an index scan only if its
    function is LEAKPROOF (it may not run before the policy otherwise). pg_trgm's `%` only computes
    a similarity and raises nothing that carries a value, so the superuser declares it leakproof and
    name search uses its trigram index. Without superuser rights, search scans the tenant's rows."""
    (superuser,) = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not superuser:
        return
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    admin.execute("ALTER FUNCTION similarity_op(text, text) LEAKPROOF")


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def check_key_request(tenant: str, scopes: tuple[str, ...], rate_per_second: int) -> None:
    """Refuses a bad tenant name, scope or rate before anything is created."""
    check_tenant_name(tenant)
    if set(scopes) - set(SCOPES) or not scopes:
        raise ApiKeyError(f"scopes must be some of {', '.join(SCOPES)}")
    if rate_per_second < 1:
        raise ApiKeyError("the rate limit is at least 1 request per second")


def create_key(
    admin: psycopg.Connection,
    tenant: str,
    scopes: tuple[str, ...] = ("profiles",),
    rate_per_second: int = DEFAULT_RATE,
    label: str | None = None,
) -> tuple[str, str]:
    """A new key for the tenant: (key id, the key itself, shown once)."""
    check_key_request(tenant, scopes, rate_per_second)
    ensure_tenant_roles(admin, tenant)
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    admin.execute(
        "INSERT INTO cdp_api_keys.keys (key_id, tenant_id, scopes, rate_per_second, secret_sha256, label) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (key_id, tenant, sorted(set(scopes)), rate_per_second, _hash(secret), label),
    )
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}"


def list_keys(admin: psycopg.Connection) -> list[tuple[str, str, list[str], int, datetime, datetime | None]]:
    if not admin.execute("SELECT to_regclass(%s)", (KEYS_TABLE,)).fetchone()[0]:
        return []
    return admin.execute(
        "SELECT key_id, tenant_id, scopes, rate_per_second, created_at, revoked_at FROM cdp_api_keys.keys "
        "ORDER BY tenant_id, created_at"
    ).fetchall()


def revoke_key(admin: psycopg.Connection, key_id: str) -> None:
    updated = (
        admin.execute(
            "UPDATE cdp_api_keys.keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL", (key_id,)
        ).rowcount
        if admin.execute("SELECT to_regclass(%s)", (KEYS_TABLE,)).fetchone()[0]
        else 0
    )
    if not updated:
        raise ApiKeyError(f"no active key {key_id[:20]!r}")


def parse_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a key's text, None when it is not shaped like one."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or not 20 <= len(parts[2]) <= 64:
        return None
    return parts[1], parts[2]


async def verify_key(conn: psycopg.AsyncConnection, presented: str) -> ApiKey | None:
    """The active key the text stands for, or None (unknown, revoked, wrong secret)."""
    parsed = parse_key(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    cursor = await conn.execute(
        "SELECT tenant_id, scopes, rate_per_second, secret_sha256 FROM cdp_api_keys.keys "
        "WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    )
    row = await cursor.fetchone()
    if row is None or not hmac.compare_digest(bytes(row[3]), _hash(secret)):
        return None
    return ApiKey(key_id, row[0], tuple(row[1]), row[2])
