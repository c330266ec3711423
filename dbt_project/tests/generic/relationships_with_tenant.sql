{#- A foreign key that includes the tenant: fails for every row whose (tenant_id, column) is not a
    (tenant_id, field) of `to`. Ids are unique only within a tenant, so dbt's `relationships`
    (the id alone) would accept a row pointing into another tenant. Null ids are not checked. -#}
{% test relationships_with_tenant(model, column_name, to, field) %}
select child.tenant_id, child.{{ column_name }}
from {{ model }} as child
where child.{{ column_name }} is not null
  and not exists (
      select 1
      from {{ to }} as parent
      where parent.tenant_id = child.tenant_id and parent.{{ field }} = child.{{ column_name }}
  )
{% endtest %}
