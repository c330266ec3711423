-- Lifecycle stage of every buyer: new (first order in the last 30 days), active (ordered in the
-- last 90), lapsing (last order 91-180 days ago), churned (longer).
select
    tenant_id,
    cdp_customer_id,
    first_order_date,
    last_order_date,
    days_since_last_order,
    case
        when first_order_date > {{ as_of_date() }} - 30 then 'lifecycle_new'
        when days_since_last_order <= 90 then 'lifecycle_active'
        when days_since_last_order <= 180 then 'lifecycle_lapsing'
        else 'lifecycle_churned'
    end as segment,
    {{ as_of_date() }} as as_of_date
from {{ ref('customer_360') }}
where orders > 0
