-- Per tenant, segment and day: how the campaigns sent to the segment's audience did. Each count is
-- of distinct (campaign, recipient) pairs, so a platform reporting an open twice counts it once.
with outcomes as (
    select
        tenant_id,
        segment,
        event_day as day,
        campaign_id,
        event_type,
        campaign_id || ':' || recipient as delivery
    from {{ ref('stg_campaign_results') }}
),

counts as (
    select
        tenant_id,
        segment,
        day,
        count(distinct campaign_id) as campaigns,
        count(distinct delivery) filter (where event_type = 'delivered') as delivered,
        count(distinct delivery) filter (where event_type = 'opened') as opened,
        count(distinct delivery) filter (where event_type = 'clicked') as clicked,
        count(distinct delivery) filter (where event_type = 'converted') as converted,
        count(distinct delivery) filter (where event_type = 'unsubscribed') as unsubscribed
    from outcomes
    group by 1, 2, 3
)

select
    tenant_id::text as tenant_id,
    segment::text as segment,
    day::date as day,
    campaigns::bigint as campaigns,
    delivered::bigint as delivered,
    opened::bigint as opened,
    clicked::bigint as clicked,
    converted::bigint as converted,
    unsubscribed::bigint as unsubscribed,
    (opened::numeric / nullif(delivered, 0))::numeric(10, 4) as open_rate,
    (clicked::numeric / nullif(delivered, 0))::numeric(10, 4) as click_rate,
    (clicked::numeric / nullif(opened, 0))::numeric(10, 4) as click_to_open_rate,
    (converted::numeric / nullif(delivered, 0))::numeric(10, 4) as conversion_rate,
    (unsubscribed::numeric / nullif(delivered, 0))::numeric(10, 4) as unsubscribe_rate
from counts
