-- Salesforce opportunities, one row per opportunity: its latest version, with Salesforce's closed
-- and won flags read from the standard stage names.
select distinct on (tenant_id, opportunity_id)
    tenant_id,
    opportunity_id,
    account_id,
    name as opportunity_name,
    stage,
    stage like 'Closed%' as is_closed,
    stage = 'Closed Won' as is_won,
    amount,
    currency,
    amount_usd,
    close_date,
    created_at,
    updated_at
from {{ source('raw_cdp', 'opportunities') }}
order by tenant_id, opportunity_id, updated_at desc nulls last, _ingest_ts desc
