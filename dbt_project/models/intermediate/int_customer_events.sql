-- Every app event, once per message id (the rule fct_events keeps), attributed to a person through
-- the current identity map: by the app user id, else by the anonymous (device) id.
with events as (
    select distinct on (tenant_id, message_id)
        tenant_id,
        message_id,
        event_type,
        event_name,
        user_id,
        anonymous_id,
        event_ts,
        event_day,
        product_id,
        order_id
    from {{ ref('stg_events') }}
    order by tenant_id, message_id, _ingest_ts desc nulls last
)

select
    e.tenant_id,
    coalesce(by_user.cdp_customer_id, by_device.cdp_customer_id) as cdp_customer_id,
    e.message_id,
    e.event_type,
    e.event_name,
    e.event_ts,
    e.event_day,
    e.product_id,
    e.order_id
from events as e
left join {{ ref('stg_customer_ids') }} as by_user
    on by_user.tenant_id = e.tenant_id
    and by_user.id_type = 'app_user_id'
    and by_user.id_value = e.user_id
left join {{ ref('stg_customer_ids') }} as by_device
    on by_device.tenant_id = e.tenant_id
    and by_device.id_type = 'anonymous_id'
    and by_device.id_value = e.anonymous_id
