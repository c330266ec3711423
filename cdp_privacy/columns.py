"""Which table columns hold a person's identifiers, and SQL that matches them, for the lake's Delta
tables (Spark SQL) and the warehouse (PostgreSQL) alike.

A column is matched by its name wherever it appears, so a new curated table, warehouse table or
dbt model that names its columns as the rest do is covered without a declaration of its own.
"""

from cdp_common.identifiers import EMAIL, EMAIL_SHA256, ID, PHONE, PHONE_SHA256

MAP_VALUE, NODE, ORDER = "map_value", "node", "order"  # identity tables' values, graph nodes, order ids

COLUMN_KINDS = {
    "email": EMAIL,
    "billing_email": EMAIL,
    "trait_email": EMAIL,
    "email_sha256": EMAIL_SHA256,
    "phone_sha256": PHONE_SHA256,
    "phone": PHONE,
    "trait_phone": PHONE,
    "cdp_customer_id": ID,
    "surviving_id": ID,
    "customer_id": ID,
    "contact_id": ID,
    "user_id": ID,
    "anonymous_id": ID,
    "id_value": MAP_VALUE,
    "other_value": MAP_VALUE,
    "node_id": NODE,
    "src": NODE,
    "dst": NODE,
    "order_id": ORDER,
}


def normalised_sql(kind: str, expression: str, postgres: bool = False) -> str:
    """`expression` (a column, or a value read from a JSON record) as its kind's keys normalise it."""
    text = f"({expression})::text" if postgres else f"CAST({expression} AS STRING)"
    if kind == EMAIL:
        return f"lower(trim({text}))"
    if kind in (EMAIL_SHA256, PHONE_SHA256):
        return f"lower({text})"
    if kind == PHONE:
        flags = ", 'g'" if postgres else ""  # PostgreSQL replaces the first match only without it
        digits = f"regexp_replace({text}, '[^0-9]', ''{flags})"
        return f"trim(LEADING '0' FROM {digits})"
    return text


def spark_literal(value: object) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
