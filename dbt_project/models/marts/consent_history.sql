{{ config(indexes=[{'columns': ['tenant_id', 'cdp_customer_id', 'purpose']}]) }}

-- Every consent statement per person and purpose with the time the next one replaced it: the
-- consent as of any moment T is the row with stated_at <= T < valid_until (null: still valid).
-- The latest statement wins; at the same moment a denial wins (it sorts last, so the granting
-- row of a tie is valid for no time at all).
select
    tenant_id::text as tenant_id,
    cdp_customer_id::text as cdp_customer_id,
    purpose::text as purpose,
    status::text as status,
    source::text as source,
    stated_at::timestamptz as stated_at,
    (lead(stated_at) over statements)::timestamptz as valid_until
from {{ ref('int_consent_statements') }}
window statements as (
    partition by tenant_id, cdp_customer_id, purpose
    order by stated_at, status = 'denied', source
)
