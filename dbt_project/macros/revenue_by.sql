{#- Orders, buyers and revenue per order day and one attribute of the buyer's customer_360 row
    ('unknown' when the buyer or the attribute is not known), up to the as-of day. -#}
{% macro revenue_by(attribute) -%}
select
    o.tenant_id::text as tenant_id,
    o.order_date::date as order_date,
    coalesce(c.{{ attribute }}, 'unknown')::text as {{ attribute }},
    count(*)::bigint as orders,
    count(distinct o.cdp_customer_id)::bigint as customers,
    sum(o.total_usd)::numeric(18, 2) as revenue_usd,
    avg(o.total_usd)::numeric(18, 2) as average_order_value_usd
from {{ ref('int_customer_orders') }} as o
left join {{ ref('customer_360') }} as c using (tenant_id, cdp_customer_id)
where o.order_date <= {{ as_of_date() }}
group by 1, 2, 3
{%- endmacro %}
