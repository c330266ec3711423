select
    tenant_id,
    id_type,
    id_value,
    cdp_customer_id,
    id_since,
    first_seen,
    last_seen
from {{ source('raw_cdp', 'customer_ids') }}
