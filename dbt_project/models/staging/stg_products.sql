-- Products change rarely: one row per product, its latest version.
select distinct on (tenant_id, product_id)
    tenant_id,
    product_id,
    title,
    product_type,
    vendor,
    sku,
    price,
    created_at,
    updated_at
from {{ source('raw_cdp', 'products') }}
order by tenant_id, product_id, updated_at desc nulls last, _ingest_ts desc
