-- Every order, its latest version (the rule fct_orders keeps), attributed to a person through the
-- current identity map: by the Shopify customer id when the order has one, else by its email.
-- A view over staging, so a merge of two profiles re-attributes their history on the next build.
with orders as (
    select distinct on (tenant_id, order_id)
        tenant_id,
        order_id,
        customer_id,
        email,
        order_date,
        ordered_at,
        total_usd,
        financial_status
    from {{ ref('stg_orders') }}
    where total_usd is not null
    order by tenant_id, order_id, _ingest_ts desc nulls last, event_date desc
)

select
    o.tenant_id,
    coalesce(by_customer.cdp_customer_id, by_email.cdp_customer_id) as cdp_customer_id,
    o.order_id,
    o.order_date,
    o.ordered_at,
    o.total_usd,
    o.financial_status
from orders as o
left join {{ ref('stg_customer_ids') }} as by_customer
    on by_customer.tenant_id = o.tenant_id
    and by_customer.id_type = 'shopify_customer_id'
    and by_customer.id_value = o.customer_id::text
left join {{ ref('stg_customer_ids') }} as by_email
    on by_email.tenant_id = o.tenant_id
    and by_email.id_type = 'email'
    and by_email.id_value = o.email
