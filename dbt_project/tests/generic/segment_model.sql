{#- Every segment model: a member appears once per segment, with tenant, id and segment set, as of one day. -#}
{% test segment_model(model) %}
select tenant_id, cdp_customer_id, segment, count(*) as occurrences
from {{ model }}
group by tenant_id, cdp_customer_id, segment
having count(*) > 1 or tenant_id is null or cdp_customer_id is null or segment is null
union all
select null, null, 'more than one as_of_date', count(distinct as_of_date)
from {{ model }}
having count(distinct as_of_date) > 1
{% endtest %}
