-- Per Salesforce account: the company, its open and won pipeline in USD (the opportunities as last
-- loaded), and the people the CDP knows there (profiles whose Salesforce contact belongs to the
-- account) with what they ordered up to the run's day.
with pipeline as (
    select
        tenant_id,
        account_id,
        count(*) filter (where not is_closed) as open_opportunities,
        sum(amount_usd) filter (where not is_closed) as open_pipeline_usd,
        count(*) filter (where is_won) as won_opportunities,
        sum(amount_usd) filter (where is_won) as won_usd
    from {{ ref('stg_opportunities') }}
    group by 1, 2
),

people as (
    select tenant_id, salesforce_account_id as account_id, cdp_customer_id
    from {{ ref('stg_customer_profiles') }}
    where salesforce_account_id is not null
),

purchases as (
    select
        p.tenant_id,
        p.account_id,
        count(distinct p.cdp_customer_id) as known_people,
        count(distinct o.cdp_customer_id) as buyers,
        count(o.order_id) as orders,
        sum(o.total_usd) as revenue_usd
    from people as p
    left join {{ ref('int_customer_orders') }} as o
        on o.tenant_id = p.tenant_id
        and o.cdp_customer_id = p.cdp_customer_id
        and o.order_date <= {{ as_of_date() }}
    group by 1, 2
)

select
    a.tenant_id::text as tenant_id,
    a.account_id::text as account_id,
    a.account_name::text as account_name,
    a.industry::text as industry,
    a.employees::bigint as employees,
    a.country::text as country,
    coalesce(pl.open_opportunities, 0)::bigint as open_opportunities,
    coalesce(pl.open_pipeline_usd, 0)::numeric(18, 2) as open_pipeline_usd,
    coalesce(pl.won_opportunities, 0)::bigint as won_opportunities,
    coalesce(pl.won_usd, 0)::numeric(18, 2) as won_usd,
    coalesce(pu.known_people, 0)::bigint as known_people,
    coalesce(pu.buyers, 0)::bigint as buyers,
    coalesce(pu.orders, 0)::bigint as orders,
    coalesce(pu.revenue_usd, 0)::numeric(18, 2) as revenue_usd,
    {{ as_of_date() }}::date as as_of_date
from {{ ref('stg_accounts') }} as a
left join pipeline as pl using (tenant_id, account_id)
left join purchases as pu using (tenant_id, account_id)
