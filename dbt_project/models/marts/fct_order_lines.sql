{{ config(materialized='incremental', unique_key=['tenant_id', 'line_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', indexes=[{'columns': ['tenant_id', 'line_id'], 'unique': true},
                                                         {'columns': ['tenant_id', 'order_date']}]) }}

-- One row per order line: its latest version, windowed like fct_orders.
select distinct on (tenant_id, line_id)
    tenant_id,
    line_id,
    order_id,
    product_id,
    sku,
    quantity,
    price_usd,
    order_date,
    event_date
from {{ ref('stg_order_lines') }}
where true
{% if is_incremental() %}
    and event_date between {{ window_start() }} and {{ window_end() }}
{% endif %}
order by tenant_id, line_id, _ingest_ts desc nulls last, event_date desc
