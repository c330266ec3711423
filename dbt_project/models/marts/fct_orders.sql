{{ config(materialized='incremental', unique_key=['tenant_id', 'order_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', indexes=[{'columns': ['tenant_id', 'order_id'], 'unique': true},
                                                         {'columns': ['tenant_id', 'order_date']}]) }}

-- One row per order: its latest version. Incremental runs rebuild the orders of the partition
-- window reopened by the late-data window.
select distinct on (tenant_id, order_id)
    tenant_id,
    order_id,
    order_number,
    customer_id,
    email,
    ordered_at,
    order_date,
    currency,
    total,
    total_usd,
    financial_status,
    event_date
from {{ ref('stg_orders') }}
where total_usd is not null
{% if is_incremental() %}
    and event_date between {{ window_start() }} and {{ window_end() }}
{% endif %}
order by tenant_id, order_id, _ingest_ts desc nulls last, event_date desc
