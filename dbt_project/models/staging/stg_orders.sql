select
    tenant_id,
    order_id,
    order_number,
    customer_id,
    email,
    ordered_at,
    ordered_at::date as order_date,
    currency,
    total,
    total_usd,
    financial_status,
    event_date,
    _ingest_ts
from {{ source('raw_cdp', 'orders') }}
