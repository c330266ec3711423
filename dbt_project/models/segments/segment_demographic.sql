-- Who people are: one segment per country (ISO code), industry and company size band
-- (small < 50 employees, mid-market < 1,000, enterprise).
with people as (
    select tenant_id, cdp_customer_id, country, industry, company_employees
    from {{ ref('customer_360') }}
)

select tenant_id, cdp_customer_id, 'country_' || lower(country) as segment, {{ as_of_date() }} as as_of_date
from people where country is not null
union all
select tenant_id, cdp_customer_id, 'industry_' || regexp_replace(lower(industry), '[^a-z0-9]+', '_', 'g') as segment,
       {{ as_of_date() }} as as_of_date
from people where industry is not null
union all
select tenant_id, cdp_customer_id,
       case when company_employees < 50 then 'company_size_small'
            when company_employees < 1000 then 'company_size_mid_market'
            else 'company_size_enterprise' end as segment,
       {{ as_of_date() }} as as_of_date
from people where company_employees is not null
