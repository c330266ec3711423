{#- Every model's post-hook (dbt_project.yml): row-level security by tenant on tables, the caller's
    policies beneath views (security_invoker), column grants to the tenant groups and the masked
    view in tenant_views, all by cdp_security.protect (cdp_resources/warehouse_security.py; the
    warehouse load creates it). An analyst's new model gets the same with no change. -#}
{% macro protect_for_tenants() %}
    select cdp_security.protect('{{ this.include(database=false) }}'::regclass)
{% endmacro %}
