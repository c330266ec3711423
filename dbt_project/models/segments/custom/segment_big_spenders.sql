-- An example of an analyst's own segment: people who spent at least 500 USD in their lifetime.
-- Copy this file, change the query, keep the four columns; document and test it in a yml of the same name.
select
    tenant_id,
    cdp_customer_id,
    'big_spenders' as segment,
    {{ as_of_date() }} as as_of_date
from {{ ref('customer_360') }}
where lifetime_revenue_usd >= 500
