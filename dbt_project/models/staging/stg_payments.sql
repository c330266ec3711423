select
    tenant_id,
    payment_id,
    customer_id,
    order_id,
    amount,
    amount_usd,
    currency,
    status,
    billing_email,
    paid_at,
    event_date,
    _ingest_ts
from {{ source('raw_cdp', 'payments') }}
