{{ config(materialized='incremental', unique_key=['tenant_id', 'product_id', 'day'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', indexes=[{'columns': ['tenant_id', 'product_id', 'day'], 'unique': true}]) }}

-- Per product and day: units, orders and revenue from order lines; add-to-carts and checkouts from app events.
with sales as (
    select tenant_id, product_id, order_date as day,
           sum(quantity) as units_sold, count(distinct order_id) as orders, sum(price_usd * quantity) as revenue_usd
    from {{ ref('fct_order_lines') }}
    where product_id is not null
    {% if is_incremental() %} and order_date between {{ window_start() }} and {{ window_end() }} {% endif %}
    group by 1, 2, 3
),

engagement as (
    select tenant_id, product_id, event_day as day,
           count(*) filter (where event_name = 'add_to_cart') as add_to_carts,
           count(*) filter (where event_name = 'checkout') as checkouts
    from {{ ref('fct_events') }}
    where product_id is not null
    {% if is_incremental() %} and event_day between {{ window_start() }} and {{ window_end() }} {% endif %}
    group by 1, 2, 3
)

select
    tenant_id::text as tenant_id,
    product_id::bigint as product_id,
    day::date as day,
    p.title::text as title,
    p.product_type::text as product_type,
    coalesce(s.units_sold, 0)::bigint as units_sold,
    coalesce(s.orders, 0)::bigint as orders,
    coalesce(s.revenue_usd, 0)::numeric(18, 2) as revenue_usd,
    coalesce(e.add_to_carts, 0)::bigint as add_to_carts,
    coalesce(e.checkouts, 0)::bigint as checkouts,
    (s.orders::numeric / nullif(e.add_to_carts, 0))::numeric(10, 4) as orders_per_add_to_cart
from sales as s
full outer join engagement as e using (tenant_id, product_id, day)
left join {{ ref('stg_products') }} as p using (tenant_id, product_id)
