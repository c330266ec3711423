-- Behaviour in the app: cart abandoners (their latest add-to-cart is in the last 7 days and no
-- purchase followed it) and highly engaged people (the top decile of the tenant by events in 30
-- days; equal counts rank equally).
with abandoners as (
    select tenant_id, cdp_customer_id, 'behaviour_cart_abandoners_7d' as segment
    from {{ ref('customer_360') }}
    where last_add_to_cart_at::date > {{ as_of_date() }} - 7
      and (last_app_purchase_at is null or last_app_purchase_at < last_add_to_cart_at)
),

engagement as (
    select tenant_id, cdp_customer_id, events_30d,
           percent_rank() over (partition by tenant_id order by events_30d) as engagement_rank
    from {{ ref('customer_360') }}
    where events_30d > 0
),

engaged as (
    select tenant_id, cdp_customer_id, 'behaviour_highly_engaged' as segment
    from engagement
    where engagement_rank >= 0.9
)

select tenant_id, cdp_customer_id, segment, {{ as_of_date() }} as as_of_date from abandoners
union all
select tenant_id, cdp_customer_id, segment, {{ as_of_date() }} as as_of_date from engaged
