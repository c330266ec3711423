"""Erasure in PostgreSQL: every table of the warehouse that holds people (the loaded `raw_cdp`
tables, every table dbt built, segment membership and its history) and the webhook queue.

Tables are found in the catalogue by their columns (`cdp_privacy.columns`), so a new dbt model
needs nothing here. Deletes go to each parent table (PostgreSQL routes them to its partitions);
views hold nothing of their own. The platform's own bookkeeping schemas are left alone.
"""

from collections import Counter

import orjson
import psycopg
from psycopg import sql

from cdp_common.identifiers import any_value_keys, record_keys
from cdp_privacy.columns import COLUMN_KINDS, MAP_VALUE, NODE, ORDER, normalised_sql
from cdp_privacy.person import Person

# Schemas that hold no one's data (the queue of forget requests, tenant security, sources'
# bookmarks) or that are erased apart (the webhook queue, whose payloads are JSON text).
OWN_SCHEMAS = ("cdp_privacy", "cdp_security", "cdp_sources", "cdp_webhooks", "information_schema")

TABLES_SQL = """
SELECT n.nspname, c.relname,
       array_agg(a.attname::text ORDER BY a.attnum),
       array_agg(t.typcategory = 'A' ORDER BY a.attnum),
       bool_or(EXISTS (SELECT 1 FROM pg_attribute x
                       WHERE x.attrelid = c.oid AND x.attname = 'tenant_id' AND NOT x.attisdropped))
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_%%'
  AND a.attname = ANY (%s)
GROUP BY 1, 2
ORDER BY 1, 2
"""


def _values(person: Person, kind: str, order_ids: list[str]) -> list:
    if kind == MAP_VALUE:
        return person.map_values
    if kind == NODE:
        return sorted(person.node_ids)
    if kind == ORDER:
        return order_ids
    return person.values(kind)


def _condition(person: Person, columns: list[str], arrays: list[bool], order_ids: list[str]):
    terms, params = [], []
    for column, is_array in zip(columns, arrays, strict=True):
        kind = COLUMN_KINDS[column]
        values = _values(person, kind, order_ids)
        if not values:
            continue
        if kind == NODE:
            terms.append(sql.SQL("{} = ANY (%s::bigint[])").format(sql.Identifier(column)))
        elif is_array:
            terms.append(
                sql.SQL("EXISTS (SELECT FROM unnest({}) AS v(x) WHERE {} = ANY (%s))").format(
                    sql.Identifier(column), sql.SQL(normalised_sql(kind, "x", postgres=True))
                )
            )
        else:
            # `column` is one of COLUMN_KINDS' names (the catalogue query selects only those)
            terms.append(sql.SQL(normalised_sql(kind, f'"{column}"', postgres=True) + " = ANY (%s)"))
        params.append([str(v) for v in values] if kind != NODE else [int(v) for v in values])
    return terms, params


def erase_warehouse(conn: psycopg.Connection, person: Person, order_ids: list[str]) -> Counter:
    """The person's rows deleted from every warehouse table; rows removed per `schema.table`."""
    removed: Counter = Counter()
    for schema, table, columns, arrays, has_tenant in conn.execute(
        TABLES_SQL, (list(OWN_SCHEMAS), list(COLUMN_KINDS))
    ).fetchall():
        terms, params = _condition(person, columns, arrays, order_ids)
        if not terms:
            continue
        condition = sql.SQL(" OR ").join(terms)
        if has_tenant:
            condition = sql.SQL("tenant_id = %s AND ({})").format(condition)
            params = [person.tenant, *params]
        deleted = conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE {}").format(sql.Identifier(schema), sql.Identifier(table), condition),
            params,
        ).rowcount
        if deleted:
            removed[f"{schema}.{table}"] += deleted
    return removed


def erase_webhook_queue(conn: psycopg.Connection, person: Person) -> int:
    """Events of the person waiting in the webhook queue (PostgreSQL's; SQS messages cannot be
    taken out one by one and are dropped by the suppression list when batched)."""
    if conn.execute("SELECT to_regclass('cdp_webhooks.queue')").fetchone()[0] is None:
        return 0
    keys, doomed = person.keys, []
    rows = conn.execute(
        "SELECT id, provider, stream, payload FROM cdp_webhooks.queue WHERE tenant = %s", (person.tenant,)
    )
    for row_id, provider, stream, payload in rows:
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            record = payload
        if (record_keys(provider, stream or "", record) | any_value_keys(record)) & keys:
            doomed.append(row_id)
    if doomed:
        conn.execute("DELETE FROM cdp_webhooks.queue WHERE id = ANY (%s)", (doomed,))
    return len(doomed)
