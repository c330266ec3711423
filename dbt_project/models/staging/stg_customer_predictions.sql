select
    tenant_id,
    cdp_customer_id,
    churn_probability,
    purchase_probability,
    probability_alive,
    expected_purchases_12m,
    expected_order_value_usd,
    expected_value_12m_usd,
    horizon_days,
    as_of_date as predicted_as_of
from {{ source('raw_cdp', 'customer_predictions') }}
