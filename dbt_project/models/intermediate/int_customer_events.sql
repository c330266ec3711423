-- Events attributed to a person: by the app user id, else by the anonymous (device) id.
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
from {{ ref('fct_events') }} as e
left join {{ ref('stg_customer_ids') }} as by_user
    on by_user.tenant_id = e.tenant_id
    and by_user.id_type = 'app_user_id'
    and by_user.id_value = e.user_id
left join {{ ref('stg_customer_ids') }} as by_device
    on by_device.tenant_id = e.tenant_id
    and by_device.id_type = 'anonymous_id'
    and by_device.id_value = e.anonymous_id
