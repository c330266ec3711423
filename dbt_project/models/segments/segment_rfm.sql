-- RFM: recency, frequency and monetary value scored 1-5 within each tenant's buyers (5 is best),
-- and the named segment the scores put a buyer in.
-- A score ranks the value, not the buyer: 1 + the whole fifths of the tenant's buyers whose value
-- is strictly worse (percent_rank). Equal values get equal scores, so buyers with one order all
-- score f = 1 however many they are, and the worst value always scores 1.
with buyers as (
    select
        tenant_id,
        cdp_customer_id,
        days_since_last_order as recency_days,
        orders as frequency,
        lifetime_revenue_usd as monetary_usd
    from {{ ref('customer_360') }}
    where orders > 0
),

scored as (
    select
        *,
        least(5, 1 + floor(5 * percent_rank() over (partition by tenant_id order by recency_days desc)))::integer as r_score,
        least(5, 1 + floor(5 * percent_rank() over (partition by tenant_id order by frequency)))::integer as f_score,
        least(5, 1 + floor(5 * percent_rank() over (partition by tenant_id order by monetary_usd)))::integer as m_score
    from buyers
)

select
    tenant_id,
    cdp_customer_id,
    recency_days,
    frequency,
    monetary_usd,
    r_score,
    f_score,
    m_score,
    concat(r_score, f_score, m_score) as rfm_score,
    case
        when r_score >= 4 and f_score >= 4 and m_score >= 4 then 'rfm_champions'
        when r_score >= 3 and f_score >= 4 then 'rfm_loyal'
        when r_score >= 4 and f_score = 1 then 'rfm_new_customers'
        when r_score >= 3 and f_score >= 2 then 'rfm_potential_loyalists'
        when r_score <= 2 and f_score >= 4 and m_score >= 4 then 'rfm_cannot_lose'
        when r_score <= 2 and f_score >= 3 then 'rfm_at_risk'
        when r_score <= 2 then 'rfm_hibernating'
        else 'rfm_needs_attention'
    end as segment,
    {{ as_of_date() }} as as_of_date
from scored
