{{ config(materialized='incremental', unique_key=['tenant_id', 'message_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', indexes=[{'columns': ['tenant_id', 'message_id'], 'unique': true},
                                                         {'columns': ['tenant_id', 'event_day']}]) }}

-- One row per event (message id), windowed like fct_orders.
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
    revenue,
    order_id,
    event_date
from {{ ref('stg_events') }}
where true
{% if is_incremental() %}
    and event_date between {{ window_start() }} and {{ window_end() }}
{% endif %}
order by tenant_id, message_id, _ingest_ts desc nulls last
