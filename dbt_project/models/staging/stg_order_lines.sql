select
    tenant_id,
    line_id,
    order_id,
    product_id,
    variant_id,
    sku,
    quantity,
    price,
    price_usd,
    currency,
    ordered_at,
    ordered_at::date as order_date,
    event_date,
    _ingest_ts
from {{ source('raw_cdp', 'order_lines') }}
