-- Monthly acquisition cohorts (month of a person's first order) × months since then: how many of
-- the cohort ordered in that month, and what they spent.
with orders as (
    select tenant_id, cdp_customer_id, date_trunc('month', order_date)::date as order_month, total_usd
    from {{ ref('int_customer_orders') }}
    where cdp_customer_id is not null and order_date <= {{ as_of_date() }}
),

cohorts as (
    select tenant_id, cdp_customer_id, min(order_month) as cohort_month
    from orders
    group by 1, 2
),

sizes as (
    select tenant_id, cohort_month, count(*) as cohort_size
    from cohorts
    group by 1, 2
),

activity as (
    select
        c.tenant_id,
        c.cohort_month,
        ((extract(year from o.order_month) - extract(year from c.cohort_month)) * 12
         + extract(month from o.order_month) - extract(month from c.cohort_month))::integer as months_since_first_order,
        count(distinct o.cdp_customer_id) as active_customers,
        sum(o.total_usd) as revenue_usd
    from orders as o
    join cohorts as c using (tenant_id, cdp_customer_id)
    group by 1, 2, 3
)

select
    a.tenant_id::text as tenant_id,
    a.cohort_month::date as cohort_month,
    a.months_since_first_order::integer as months_since_first_order,
    s.cohort_size::bigint as cohort_size,
    a.active_customers::bigint as active_customers,
    (a.active_customers::numeric / s.cohort_size)::numeric(6, 4) as retention_rate,
    a.revenue_usd::numeric(18, 2) as revenue_usd
from activity as a
join sizes as s using (tenant_id, cohort_month)
