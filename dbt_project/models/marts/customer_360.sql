{{ config(indexes=[{'columns': ['tenant_id', 'cdp_customer_id'], 'unique': true}]) }}

-- One row per person: the golden-record profile with what they bought and did, as of the run's day.
with orders as (
    select
        tenant_id,
        cdp_customer_id,
        count(*) as orders,
        sum(total_usd) as lifetime_revenue_usd,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date
    from {{ ref('int_customer_orders') }}
    where cdp_customer_id is not null and order_date <= {{ as_of_date() }}
    group by 1, 2
),

events as (
    select
        tenant_id,
        cdp_customer_id,
        count(*) filter (where event_day > {{ as_of_date() }} - 30) as events_30d,
        count(*) filter (where event_name = 'page_view' and event_day > {{ as_of_date() }} - 30) as page_views_30d,
        max(event_ts) as last_event_at,
        max(event_ts) filter (where event_name = 'add_to_cart') as last_add_to_cart_at,
        max(event_ts) filter (where event_name = 'purchase') as last_app_purchase_at
    from {{ ref('int_customer_events') }}
    where cdp_customer_id is not null and event_day <= {{ as_of_date() }}
    group by 1, 2
),

-- Each purpose's consent at the end of the as-of day (the statement valid then), unknown without one.
consent as (
    select
        tenant_id,
        cdp_customer_id,
        max(status) filter (where purpose = 'email_marketing') as email_marketing,
        max(status) filter (where purpose = 'sms_marketing') as sms_marketing,
        max(status) filter (where purpose = 'advertising') as advertising
    from {{ ref('consent_history') }}
    where stated_at < {{ as_of_date() }} + 1 and (valid_until is null or valid_until >= {{ as_of_date() }} + 1)
    group by 1, 2
)

select
    p.tenant_id::text as tenant_id,
    p.cdp_customer_id::text as cdp_customer_id,
    p.email::text as email,
    p.phone::text as phone,
    coalesce(p.full_name, nullif(concat_ws(' ', p.first_name, p.last_name), ''))::text as name,
    p.city::text as city,
    p.country::text as country,
    p.company_name::text as company_name,
    p.industry::text as industry,
    p.company_employees::integer as company_employees,
    p.accepts_marketing::boolean as accepts_marketing,
    coalesce(c.email_marketing, 'unknown')::text as email_marketing_consent,
    coalesce(c.sms_marketing, 'unknown')::text as sms_marketing_consent,
    coalesce(c.advertising, 'unknown')::text as advertising_consent,
    p.preferred_channel::text as preferred_channel,
    p.identifiers::bigint as identifiers,
    p.first_seen::timestamptz as first_seen,
    coalesce(o.orders, 0)::bigint as orders,
    coalesce(o.lifetime_revenue_usd, 0)::numeric(18, 2) as lifetime_revenue_usd,
    (o.lifetime_revenue_usd / nullif(o.orders, 0))::numeric(18, 2) as average_order_value_usd,
    o.first_order_date::date as first_order_date,
    o.last_order_date::date as last_order_date,
    ({{ as_of_date() }} - o.last_order_date)::integer as days_since_last_order,
    coalesce(e.events_30d, 0)::bigint as events_30d,
    coalesce(e.page_views_30d, 0)::bigint as page_views_30d,
    e.last_event_at::timestamptz as last_event_at,
    e.last_add_to_cart_at::timestamptz as last_add_to_cart_at,
    e.last_app_purchase_at::timestamptz as last_app_purchase_at,
    pr.churn_probability::double precision as churn_probability,
    pr.probability_alive::double precision as probability_alive,
    pr.expected_purchases_12m::double precision as expected_purchases_12m,
    pr.expected_value_12m_usd::numeric(18, 2) as predicted_value_12m_usd,
    pr.predicted_as_of::date as predicted_as_of,
    {{ as_of_date() }}::date as as_of_date
from {{ ref('stg_customer_profiles') }} as p
left join orders as o using (tenant_id, cdp_customer_id)
left join events as e using (tenant_id, cdp_customer_id)
left join consent as c using (tenant_id, cdp_customer_id)
left join {{ ref('stg_customer_predictions') }} as pr using (tenant_id, cdp_customer_id)
