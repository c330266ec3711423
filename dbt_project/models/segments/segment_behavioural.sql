-- Behaviour in the app: cart abandoners (added to cart in the last 7 days and did not buy after
-- their last add) and highly engaged people (the top decile of the tenant by events in 30 days).
with recent as (
    select
        tenant_id,
        cdp_customer_id,
        max(event_ts) filter (where event_name = 'add_to_cart') as last_add_to_cart,
        max(event_ts) filter (where event_name = 'purchase') as last_purchase
    from {{ ref('int_customer_events') }}
    where cdp_customer_id is not null
      and event_day > {{ as_of_date() }} - 7 and event_day <= {{ as_of_date() }}
    group by 1, 2
),

abandoners as (
    select tenant_id, cdp_customer_id, 'behaviour_cart_abandoners_7d' as segment
    from recent
    where last_add_to_cart is not null and (last_purchase is null or last_purchase < last_add_to_cart)
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
