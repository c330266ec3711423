-- Orders attributed to a person: by the Shopify customer id when the order has one, else by its email.
select
    o.tenant_id,
    coalesce(by_customer.cdp_customer_id, by_email.cdp_customer_id) as cdp_customer_id,
    o.order_id,
    o.order_date,
    o.ordered_at,
    o.total_usd,
    o.financial_status
from {{ ref('fct_orders') }} as o
left join {{ ref('stg_customer_ids') }} as by_customer
    on by_customer.tenant_id = o.tenant_id
    and by_customer.id_type = 'shopify_customer_id'
    and by_customer.id_value = o.customer_id::text
left join {{ ref('stg_customer_ids') }} as by_email
    on by_email.tenant_id = o.tenant_id
    and by_email.id_type = 'email'
    and by_email.id_value = o.email
