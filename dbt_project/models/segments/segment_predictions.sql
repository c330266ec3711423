-- Segments of the published predictions (docs/predictions.md): high-value buyers likely to churn,
-- and the buyers predicted to be worth the most in the next 12 months. High value is the top
-- fifth of the tenant's scored buyers (percent_rank, so equal values rank alike); a buyer whose
-- tenant has no published model has no prediction and is in neither segment.
with scored as (
    select
        tenant_id,
        cdp_customer_id,
        churn_probability,
        predicted_value_12m_usd,
        lifetime_revenue_usd,
        percent_rank() over (partition by tenant_id order by lifetime_revenue_usd) as value_rank,
        percent_rank() over (partition by tenant_id order by predicted_value_12m_usd) as predicted_value_rank
    from {{ ref('customer_360') }}
    where churn_probability is not null
),

members as (
    select *, 'prediction_churn_risk_high_value' as segment
    from scored
    where value_rank >= {{ var('high_value_rank', 0.8) }} and churn_probability >= {{ var('churn_risk_probability', 0.5) }}
    union all
    select *, 'prediction_high_value' as segment
    from scored
    where predicted_value_rank >= {{ var('high_value_rank', 0.8) }}
)

select
    tenant_id,
    cdp_customer_id,
    segment,
    churn_probability,
    predicted_value_12m_usd,
    lifetime_revenue_usd,
    {{ as_of_date() }} as as_of_date
from members
