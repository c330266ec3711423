select
    tenant_id,
    message_id,
    type as event_type,
    event as event_name,
    user_id,
    anonymous_id,
    event_ts,
    event_ts::date as event_day,
    page_url,
    product_id,
    revenue,
    currency,
    order_id,
    event_date,
    _ingest_ts
from {{ source('raw_cdp', 'events') }}
