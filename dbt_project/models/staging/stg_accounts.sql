-- Salesforce accounts (companies), one row per account: its latest version.
select distinct on (tenant_id, account_id)
    tenant_id,
    account_id,
    name as account_name,
    domain,
    industry,
    employees,
    annual_revenue,
    country,
    created_at,
    updated_at
from {{ source('raw_cdp', 'accounts') }}
order by tenant_id, account_id, updated_at desc nulls last, _ingest_ts desc
