"""The API's reads of the serving tables, on a connection already acting as the key's tenant role.

Personal values come from `tenant_views.api__*`, the masked views: the database shows them to a
role with the PII grant and `***` (or null) to the others. Lookups by a personal identifier and
search read the personal columns of the tables themselves, which only the PII role may select.
Every query also names its tenant, for the indexes; which rows come back is the policies' doing.
"""

from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cdp_api.serving import PERSONAL_ID_TYPES
from cdp_resources.consent import PURPOSES

# Identifier types a profile is looked up by: the identity map's (cdp_identity/merge_rules.yaml) and the profile's own id.
ID_TYPES = (
    "cdp_customer_id",
    "email",
    "phone",
    "app_user_id",
    "shopify_customer_id",
    "stripe_customer_id",
    "salesforce_contact_id",
    "anonymous_id",
)
# A prefix range's upper bound in the "C" collation (byte order): no character sorts after this one.
_LAST_CHARACTER = "\U0010ffff"
# The latest published scores of the tenant's model (cdp_predictions); null when it has none.
PREDICTION_FIELDS = ("churn_probability", "probability_alive", "expected_purchases_12m", "predicted_value_12m_usd")
_PROFILE_FIELDS = (
    "cdp_customer_id, email, phone, name, city, country, company_name, industry, company_employees, "
    "accepts_marketing, preferred_channel, identifiers, first_seen, orders, lifetime_revenue_usd, "
    "average_order_value_usd, first_order_date, last_order_date, days_since_last_order, events_30d, "
    "page_views_30d, last_event_at, as_of_date, "
    f"{', '.join(f'{purpose}_consent' for purpose in PURPOSES)}, {', '.join(PREDICTION_FIELDS)}, predicted_as_of"
)


def normalised(id_type: str, value: str) -> str:
    """The value as the identity map keeps it (emails lower-cased)."""
    return value.strip().lower() if id_type == "email" else value.strip()


async def _all(conn: psycopg.AsyncConnection, query: str, params: dict) -> list[dict[str, Any]]:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query, params)
    return await cursor.fetchall()


async def find_customer(conn: psycopg.AsyncConnection, tenant: str, id_type: str, value: str) -> str | None:
    """The cdp_customer_id an identifier resolves to in the tenant, or None."""
    params = {"tenant": tenant, "type": id_type, "value": normalised(id_type, value)}
    if id_type == "cdp_customer_id":
        query = "SELECT cdp_customer_id FROM api.profiles WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(value)s"
    else:
        column = "value_pii" if id_type in PERSONAL_ID_TYPES else "id_value"
        query = (
            f"SELECT cdp_customer_id FROM api.identifiers WHERE tenant_id = %(tenant)s AND id_type = %(type)s "
            f"AND {column} = %(value)s LIMIT 1"
        )
    rows = await _all(conn, query, params)
    return rows[0]["cdp_customer_id"] if rows else None


async def profile(conn: psycopg.AsyncConnection, tenant: str, customer: str) -> dict[str, Any] | None:
    """The golden record, its identifiers and its segments on the record's as-of day (personal values
    as the role may see them), in one statement; None when the id has no profile."""
    records = await _all(
        conn,
        f"SELECT {_PROFILE_FIELDS}, "
        "(SELECT coalesce(jsonb_agg(jsonb_build_object('type', id_type, 'value', coalesce(id_value, value_pii), "
        "'id_since', id_since, 'first_seen', first_seen, 'last_seen', last_seen) "
        "ORDER BY id_type, first_seen, coalesce(id_value, value_pii)), '[]') "
        "FROM tenant_views.api__identifiers WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(customer)s) "
        "AS identifier_list, "
        "(SELECT coalesce(jsonb_agg(jsonb_build_object('segment', segment, 'source_model', source_model) "
        "ORDER BY segment), '[]') FROM api.memberships m WHERE m.tenant_id = %(tenant)s "
        "AND m.cdp_customer_id = %(customer)s AND m.as_of_date = p.as_of_date) AS segment_list "
        "FROM tenant_views.api__profiles p WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(customer)s",
        {"tenant": tenant, "customer": customer},
    )
    if not records:
        return None
    record = records[0]
    identifiers, segments = record.pop("identifier_list"), record.pop("segment_list")
    as_of = record.pop("as_of_date")
    consent = {
        **{purpose: record.pop(f"{purpose}_consent") for purpose in PURPOSES},
        "accepts_marketing": record.pop("accepts_marketing"),
        "preferred_channel": record.pop("preferred_channel"),
    }
    scores = {field: record.pop(field) for field in PREDICTION_FIELDS}
    predicted_as_of = record.pop("predicted_as_of")
    return {
        "cdp_customer_id": record.pop("cdp_customer_id"),
        "as_of": as_of,
        "traits": record,
        "identifiers": identifiers,
        "consent": consent,
        "predictions": {**scores, "as_of": predicted_as_of} if predicted_as_of else None,
        "segments": segments,
    }


async def segments_on(conn: psycopg.AsyncConnection, tenant: str, customer: str, day: date) -> dict[str, Any]:
    """The profile's segments in the tenant's last membership on or before `day`."""
    params = {"tenant": tenant, "customer": customer, "day": day}
    (row,) = await _all(
        conn,
        "SELECT max(as_of_date) AS as_of FROM api.memberships WHERE tenant_id = %(tenant)s AND as_of_date <= %(day)s",
        params,
    )
    rows = await _all(
        conn,
        "SELECT segment, source_model FROM api.memberships WHERE tenant_id = %(tenant)s "
        "AND cdp_customer_id = %(customer)s AND as_of_date = %(as_of)s ORDER BY segment",
        {**params, "as_of": row["as_of"]},
    )
    return {"as_of": row["as_of"], "segments": rows}


async def timeline(
    conn: psycopg.AsyncConnection, tenant: str, customer: str, after: tuple[datetime, str, str] | None, limit: int
) -> list[dict[str, Any]]:
    """Events and orders, newest first, from after the position (at, kind, item id) of the last page."""
    where = "AND (at, kind, item_id) < (%(at)s, %(kind)s, %(item)s)" if after else ""
    at, kind, item = after or (None, None, None)
    return await _all(
        conn,
        "SELECT at, kind, item_id, label, detail, amount_usd FROM api.timeline "
        f"WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(customer)s {where} "
        "ORDER BY at DESC, kind DESC, item_id DESC LIMIT %(limit)s",
        {"tenant": tenant, "customer": customer, "at": at, "kind": kind, "item": item, "limit": limit},
    )


async def explanation(conn: psycopg.AsyncConnection, tenant: str, customer: str) -> dict[str, Any]:
    """Why the profile is one person: its identifiers, the merges and splits that shaped it and the
    exclusions (blocked, shared identifiers, links that gave way to a limit) that touch it."""
    params = {"tenant": tenant, "customer": customer}
    identifiers = await _all(
        conn,
        "SELECT id_type AS type, coalesce(id_value, value_pii) AS value, id_since, first_seen, last_seen "
        "FROM tenant_views.api__identifiers WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(customer)s "
        "ORDER BY first_seen, id_type",
        params,
    )
    merges = await _all(
        conn,
        "SELECT event, cdp_customer_id AS previous_id, surviving_id, caused_by_pii AS caused_by, merged_at "
        "FROM tenant_views.api__merges WHERE tenant_id = %(tenant)s "
        "AND (surviving_id = %(customer)s OR cdp_customer_id = %(customer)s) ORDER BY merged_at, previous_id",
        params,
    )
    exclusions = await _all(
        conn,
        "SELECT kind, reason, id_type, value_pii AS value, other_type, other_value_pii AS other_value "
        "FROM tenant_views.api__exclusions WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(customer)s "
        "ORDER BY kind, id_type, value",
        params,
    )
    return {"identifiers": identifiers, "merges": merges, "exclusions": exclusions}


def _prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix + _LAST_CHARACTER


async def search(conn: psycopg.AsyncConnection, tenant: str, q: str, offset: int, limit: int) -> list[dict[str, Any]]:
    """Profiles whose email, then name, starts with q (a phone-like q: whose phone does), each once;
    when no profile does, those whose name is like q (pg_trgm similarity), best first. Personal
    columns, so the PII role only.

    A search box is typed into from the start, and a prefix is one index range; similarity reads
    every row sharing a trigram with q, so it is the answer for a q that is no profile's beginning
    (a misspelling), not padding after the prefix matches."""
    wanted = offset + limit
    fields = "cdp_customer_id, name, email, phone, city, country"
    if is_phone_query(q):
        # Phones are kept in E.164 (`+` and digits): spaces, dashes and brackets of the query are dropped.
        low, high = _prefix_range("+" + "".join(c for c in q if c.isdigit()))
        rows = await _all(
            conn,
            f"SELECT {fields}, 1.0::float AS score FROM api.profiles WHERE tenant_id = %(tenant)s "
            'AND phone COLLATE "C" >= %(low)s AND phone COLLATE "C" < %(high)s '
            'ORDER BY phone COLLATE "C", cdp_customer_id LIMIT %(wanted)s',
            {"tenant": tenant, "low": low, "high": high, "wanted": wanted},
        )
        return rows[offset:]
    low, high = _prefix_range(q.strip().lower())
    params = {"tenant": tenant, "low": low, "high": high, "q": q, "wanted": wanted}
    rows = await _all(
        conn,
        " UNION ALL ".join(
            f"(SELECT {fields}, 1.0::float AS score FROM api.profiles WHERE tenant_id = %(tenant)s "
            f'AND {column} COLLATE "C" >= %(low)s AND {column} COLLATE "C" < %(high)s '
            f'ORDER BY {column} COLLATE "C", cdp_customer_id LIMIT %(wanted)s)'
            for column in ("search_email_pii", "search_name_pii")
        ),
        params,
    )
    if not rows:
        rows = await _all(
            conn,
            f"SELECT {fields}, similarity(name, %(q)s)::float AS score FROM api.profiles "
            "WHERE tenant_id = %(tenant)s AND name %% %(q)s "
            "ORDER BY score DESC, cdp_customer_id LIMIT %(wanted)s",
            params,
        )
    return _first_of_each(rows)[offset:wanted]


def _first_of_each(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows in their order, a profile once (at its first place)."""
    seen, unique = set(), []
    for row in rows:
        if row["cdp_customer_id"] not in seen:
            seen.add(row["cdp_customer_id"])
            unique.append(row)
    return unique


def is_phone_query(q: str) -> bool:
    stripped = q.strip()
    return bool(stripped) and all(c.isdigit() or c in "+-() " for c in stripped) and sum(map(str.isdigit, q)) >= 3


async def members(
    conn: psycopg.AsyncConnection, tenant: str, segment: str, day: date | None, after: str | None, limit: int
) -> dict[str, Any] | None:
    """A segment's members on its last as-of day on or before `day` (the last one without), by id; None
    when the segment has no members on any such day."""
    params = {"tenant": tenant, "segment": segment, "day": day or date.max, "after": after or "", "limit": limit}
    (row,) = await _all(
        conn,
        "SELECT max(as_of_date) AS as_of FROM api.memberships WHERE tenant_id = %(tenant)s "
        "AND segment = %(segment)s AND as_of_date <= %(day)s",
        params,
    )
    if row["as_of"] is None:
        return None
    rows = await _all(
        conn,
        "SELECT cdp_customer_id FROM api.memberships WHERE tenant_id = %(tenant)s AND segment = %(segment)s "
        "AND as_of_date = %(as_of)s AND cdp_customer_id > %(after)s ORDER BY cdp_customer_id LIMIT %(limit)s",
        {**params, "as_of": row["as_of"]},
    )
    return {"as_of": row["as_of"], "members": [r["cdp_customer_id"] for r in rows]}
