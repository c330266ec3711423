"""Tenant isolation in the warehouse: row-level security, tenant roles and masked personal columns.

Every tenant table the platform creates (the loaded `raw_cdp` tables, every dbt model, segment
membership) goes through `cdp_security.protect(relation)`:

- tables get `ENABLE` and `FORCE ROW LEVEL SECURITY` and a policy for every role, `tenant_id` in
  `cdp_security.current_tenants()`: the tenants `cdp_security.tenant_roles` maps the role in effect
  (`current_user`, so `SET ROLE` to a role that has no tenant sees nothing) to; a second policy
  admits the table's owner, the pipeline;
- views stay as dbt makes them (run with their owner's privileges, the caller's `current_user`), so
  the policies beneath filter by the caller's tenants;
- the group `cdp_tenant_reader` may select the non-personal columns, `cdp_tenant_pii` every column;
- `tenant_views.<schema>__<relation>` shows every column to both, personal ones masked unless the
  role holds the PII grant for the row's tenant.

Analysts' login roles are members of one or both groups; the pipeline's role owns the tables and
is admitted by its own policy, by name; only superusers bypass them. The design and its limits: docs/security.md.
"""

import secrets

import psycopg
from psycopg import sql

from cdp_resources.names import InvalidName, checked_name

PIPELINE_ROLE = "cdp_pipeline"
READER_GROUP = "cdp_tenant_reader"
PII_GROUP = "cdp_tenant_pii"
SECURITY_SCHEMA = "cdp_security"
VIEWS_SCHEMA = "tenant_views"
MASK = "***"
# Column names (LIKE patterns) holding personal data: masked for roles without the PII grant.
PII_COLUMN_PATTERNS = (
    "email",
    "billing_email",
    "email_sha256",
    "phone",
    "%phone_number",
    "first_name",
    "last_name",
    "full_name",
    "name",
    "recipient",
    "address%",
    "street%",
    "postal_code",
    "zip",
    "ip_address",
    "\\_raw%",  # the raw payload columns curated keeps beside the typed ones
    "%\\_pii",  # personal values of several kinds in one column (the profile API's identifier values)
)
# Until the shared name rule lands (cdp_resources/names.py): a tenant name is a PostgreSQL-safe identifier.


class TenantAccessError(ValueError):
    """A tenant command that cannot be carried out (bad name, unknown tenant or role)."""


_SETUP = """
CREATE SCHEMA IF NOT EXISTS cdp_security;
CREATE SCHEMA IF NOT EXISTS tenant_views;
CREATE TABLE IF NOT EXISTS cdp_security.tenant_roles (
    role_name name NOT NULL,
    tenant_id text NOT NULL,
    pii boolean NOT NULL DEFAULT false,
    PRIMARY KEY (role_name, tenant_id)
);
COMMENT ON TABLE cdp_security.tenant_roles IS
    'Which tenants each analyst role sees, and whether it sees their personal columns (cdp tenants).';
ALTER TABLE cdp_security.tenant_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE cdp_security.tenant_roles FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_rows ON cdp_security.tenant_roles;
CREATE POLICY own_rows ON cdp_security.tenant_roles FOR SELECT USING (role_name = current_user);
CREATE TABLE IF NOT EXISTS cdp_security.pii_columns (pattern text PRIMARY KEY);
COMMENT ON TABLE cdp_security.pii_columns IS
    'LIKE patterns of column names holding personal data, masked without the PII grant.';

-- Not SECURITY DEFINER on purpose: current_user stays the role in effect (also beneath a view,
-- which checks privileges as its owner but runs as the caller), and tenant_roles' own policy lets
-- a role read only its own rows. Every name is schema-qualified (a caller's temporary tables are
-- never found for them); PL/pgSQL keeps each function's plan for the session.
CREATE OR REPLACE FUNCTION cdp_security.current_tenants() RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (SELECT coalesce(pg_catalog.array_agg(tenant_id), '{}') FROM cdp_security.tenant_roles
            WHERE role_name = current_user);
END
$$;
CREATE OR REPLACE FUNCTION cdp_security.pii_tenants() RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (SELECT coalesce(pg_catalog.array_agg(tenant_id), '{}') FROM cdp_security.tenant_roles
            WHERE role_name = current_user AND pii);
END
$$;
CREATE OR REPLACE FUNCTION cdp_security.is_pii(col name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM cdp_security.pii_columns WHERE col LIKE pattern)
$$;

-- Run by the relation's owner (the pipeline) after it creates or replaces a relation.
CREATE OR REPLACE FUNCTION cdp_security.protect(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind "char";
    schema_name name;
    rel_name name;
    open_columns text;
    masked_columns text;
    masked_view text;
    owner_name name;
    policy name;
    roles text;
    expression text;
BEGIN
    SELECT c.relkind, n.nspname, c.relname INTO kind, schema_name, rel_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, cdp_tenant_reader, cdp_tenant_pii', rel);
    masked_view := format('%I.%I', 'tenant_views', schema_name || '__' || rel_name);
    EXECUTE format('DROP VIEW IF EXISTS %s', masked_view);
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attname = 'tenant_id' AND attnum > 0 AND NOT attisdropped
    ) THEN
        RETURN;  -- no tenant column: closed to every tenant role
    END IF;
    IF kind IN ('r', 'p') THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', rel);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', rel);
        -- Two permissive policies, OR-ed for a role both apply to. Every role reading the table
        -- itself gets one filter, `tenant_id = ANY (its tenants)`: an init plan, evaluated once
        -- per query, then a plain comparison per row. The owner (the pipeline) gets a second
        -- policy admitting it by name. Policies are chosen by the role whose privileges are
        -- checked, which beneath a view is the view's owner, so that policy's term checks
        -- current_user (the role in effect) and a reader of the owner's views is not admitted.
        SELECT pg_get_userbyid(relowner) INTO owner_name FROM pg_class WHERE oid = rel;
        FOR policy, roles, expression IN VALUES
            ('tenant_isolation', 'PUBLIC',
             'tenant_id = ANY ((SELECT cdp_security.current_tenants())::text[])'),
            ('pipeline_rows', quote_ident(owner_name), format('(SELECT current_user = %L)', owner_name))
        LOOP
            EXECUTE format(
                CASE WHEN EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = rel AND polname = policy)
                     THEN 'ALTER POLICY %I ON %s TO %s USING (%s)'
                     ELSE 'CREATE POLICY %I ON %s TO %s USING (%s)' END,
                policy, rel, roles, expression
            );
        END LOOP;
    ELSIF kind <> 'v' THEN
        RETURN;  -- materialized views (RLS does not apply to them) and others: closed to tenant roles
    END IF;
    IF NOT (has_schema_privilege('cdp_tenant_reader', schema_name, 'USAGE')
            AND has_schema_privilege('cdp_tenant_pii', schema_name, 'USAGE')) THEN
        -- dbt protects several models at once: one schema grant at a time (two concurrent grants
        -- on the same schema fail with "tuple concurrently updated").
        PERFORM pg_advisory_xact_lock(hashtext('cdp_security.protect'));
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO cdp_tenant_reader, cdp_tenant_pii', schema_name);
    END IF;
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FILTER (WHERE NOT cdp_security.is_pii(attname)),
           string_agg(
               CASE WHEN NOT cdp_security.is_pii(attname) THEN quote_ident(attname)
                    WHEN t.typcategory = 'S' THEN format(
                        'CASE WHEN tenant_id = ANY ((SELECT cdp_security.pii_tenants())::text[]) OR %1$I IS NULL '
                        'THEN %1$I::text ELSE %2$L END AS %1$I', attname, '***')
                    ELSE format(
                        'CASE WHEN tenant_id = ANY ((SELECT cdp_security.pii_tenants())::text[]) THEN %1$I END AS %1$I',
                        attname)
               END, ', ' ORDER BY attnum)
    INTO open_columns, masked_columns
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('GRANT SELECT (%s) ON %s TO cdp_tenant_reader', open_columns, rel);
    EXECUTE format('GRANT SELECT ON %s TO cdp_tenant_pii', rel);
    -- RLS beneath already filters by the caller's tenants; the view's own filter covers an owner
    -- that bypasses RLS (a superuser), and security_barrier keeps a caller's leaky predicate (a
    -- failing cast that prints a value) from running before it.
    EXECUTE format(
        'CREATE VIEW %s WITH (security_barrier) AS SELECT %s FROM %s '
        'WHERE tenant_id = ANY ((SELECT cdp_security.current_tenants())::text[])',
        masked_view, masked_columns, rel
    );
    EXECUTE format('COMMENT ON VIEW %s IS %L', masked_view,
                   format('%s for tenant roles, personal columns masked without the PII grant', rel));
    EXECUTE format('GRANT SELECT ON %s TO cdp_tenant_reader, cdp_tenant_pii', masked_view);
END
$$;
REVOKE ALL ON FUNCTION cdp_security.protect(regclass) FROM PUBLIC;
"""


def ensure_roles(admin: psycopg.Connection) -> None:
    """As a role that may create roles (once per cluster): the pipeline's login role (it owns the
    warehouse and bypasses RLS) and the two groups analysts' roles belong to. Idempotent."""
    existing = dict(admin.execute("SELECT rolname, rolbypassrls FROM pg_roles").fetchall())
    # No BYPASSRLS: dbt's views read their tables as their owner, the pipeline, and must still
    # filter the analyst who reads them.
    if PIPELINE_ROLE not in existing:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS").format(sql.Identifier(PIPELINE_ROLE)))
    elif existing[PIPELINE_ROLE]:
        admin.execute(sql.SQL("ALTER ROLE {} NOBYPASSRLS").format(sql.Identifier(PIPELINE_ROLE)))
    for group in (READER_GROUP, PII_GROUP):
        if group not in existing:
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))


def ensure_security(conn: psycopg.Connection) -> None:
    """As the pipeline's role: the `cdp_security` schema, its tables and functions, and the groups'
    access to the schemas tenant data lives in. Idempotent; serialised by an advisory lock so
    parallel loads do not race on `CREATE OR REPLACE`."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdp_security.ensure_security'))")
        conn.execute(_SETUP)
        conn.execute(
            "INSERT INTO cdp_security.pii_columns SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (list(PII_COLUMN_PATTERNS),),
        )
        groups = sql.SQL(", ").join(map(sql.Identifier, (READER_GROUP, PII_GROUP)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA cdp_security, tenant_views TO {}").format(groups))
        conn.execute(sql.SQL("GRANT SELECT ON cdp_security.tenant_roles TO {}").format(groups))
        conn.execute(
            sql.SQL(
                "GRANT EXECUTE ON FUNCTION cdp_security.current_tenants(), cdp_security.pii_tenants() TO {}"
            ).format(groups)
        )


def ensure_security_as_owner(admin: psycopg.Connection) -> None:
    """`ensure_security` from an administrator's session, as the database's owner (the pipeline), so
    the objects it creates belong to the pipeline as the load's do."""
    (owner,) = admin.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    admin.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
    try:
        ensure_security(admin)
    finally:
        admin.execute("RESET ROLE")


def like_escaped(name: str) -> str:
    """A LIKE pattern matching exactly `name` (`contact_email` → `contact\\_email`)."""
    return name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def register_pii_columns(conn: psycopg.Connection, columns: tuple[str, ...] | list[str]) -> None:
    """Adds these exact column names to the personal columns (`cdp_security.pii_columns`), before
    `protect` builds a relation's grants and masked view. As the pipeline's role, after `ensure_security`."""
    if columns:
        conn.execute(
            "INSERT INTO cdp_security.pii_columns SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            ([like_escaped(c) for c in columns],),
        )


def protect(conn: psycopg.Connection, schema: str, relation: str) -> None:
    """RLS, grants and the masked view for one relation the pipeline owns."""
    conn.execute("SELECT cdp_security.protect(%s::regclass)", (sql.Identifier(schema, relation).as_string(conn),))


def analyst_role(tenant: str) -> str:
    return f"{tenant}_analyst"


def check_tenant_name(tenant: str | None) -> str:
    try:
        return checked_name("tenant", tenant)
    except InvalidName as error:
        raise TenantAccessError(str(error)) from None


def add_tenant(
    admin: psycopg.Connection, tenant: str, password: str | None = None, pii: bool = False
) -> tuple[str, str]:
    """Create the tenant's analyst login role (a member of the reader group, and of the PII group
    with `pii`) and map it to the tenant. Returns (role, password): generated unless given."""
    role = analyst_role(check_tenant_name(tenant))
    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        raise TenantAccessError(f"role {role} exists already")
    password = password or secrets.token_urlsafe(24)
    with admin.transaction():
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN INHERIT PASSWORD {} IN ROLE {}").format(
                sql.Identifier(role), sql.Literal(password), sql.Identifier(READER_GROUP)
            )
        )
        admin.execute(
            "INSERT INTO cdp_security.tenant_roles (role_name, tenant_id, pii) VALUES (%s, %s, false)", (role, tenant)
        )
        if pii:
            set_pii(admin, tenant, True)
    return role, password


def set_pii(admin: psycopg.Connection, tenant: str, granted: bool) -> str:
    """Grant or revoke the tenant's analyst role the tenant's personal columns."""
    role = analyst_role(check_tenant_name(tenant))
    with admin.transaction():
        updated = admin.execute(
            "UPDATE cdp_security.tenant_roles SET pii = %s WHERE role_name = %s AND tenant_id = %s",
            (granted, role, tenant),
        ).rowcount
        if not updated:
            raise TenantAccessError(f"no analyst role for tenant {tenant}: `cdp tenants add {tenant}` first")
        statement = "GRANT {} TO {}" if granted else "REVOKE {} FROM {}"
        admin.execute(sql.SQL(statement).format(sql.Identifier(PII_GROUP), sql.Identifier(role)))
    return role


def list_tenants(admin: psycopg.Connection) -> list[tuple[str, str, bool]]:
    return admin.execute(
        "SELECT tenant_id, role_name, pii FROM cdp_security.tenant_roles ORDER BY tenant_id, role_name"
    ).fetchall()
