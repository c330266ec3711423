-- Campaign results as loaded, one row per result event (its latest version when a platform sent it again).
select distinct on (tenant_id, event_id)
    tenant_id,
    event_id,
    campaign_id,
    destination,
    segment,
    cdp_customer_id,
    email_sha256,
    event_type,
    occurred_at,
    occurred_at::date as event_day,
    coalesce(cdp_customer_id, email_sha256, event_id) as recipient,
    event_date,
    _ingest_ts
from {{ source('raw_cdp', 'campaign_results') }}
order by tenant_id, event_id, _ingest_ts desc, occurred_at desc
