{{ config(materialized='incremental', unique_key=['tenant_id', 'payment_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', indexes=[{'columns': ['tenant_id', 'payment_id'], 'unique': true},
                                                         {'columns': ['tenant_id', 'paid_date']}]) }}

-- One row per Stripe charge: its latest version, windowed like fct_orders. The buyer's billing
-- email stays in staging: a charge reaches its person through its Stripe customer id or its order.
select distinct on (tenant_id, payment_id)
    tenant_id,
    payment_id,
    customer_id,
    order_id,
    amount,
    amount_usd,
    currency,
    status,
    paid_at,
    paid_at::date as paid_date,
    event_date
from {{ ref('stg_payments') }}
where true
{% if is_incremental() %}
    and event_date between {{ window_start() }} and {{ window_end() }}
{% endif %}
order by tenant_id, payment_id, _ingest_ts desc nulls last, event_date desc
