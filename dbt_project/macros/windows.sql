{#- The days an incremental run rebuilds: the partition window Dagster passes, reopened by the late-data window. -#}
{% macro window_start() -%}
    (date '{{ var("min_date") }}' - {{ var("late_days") }})
{%- endmacro %}

{% macro window_end() -%}
    (date '{{ var("max_date") }}')
{%- endmacro %}

{#- The day segments and customer_360 are computed as of: the run's last day (Dagster passes it), else today. -#}
{% macro as_of_date() -%}
    {%- if var("as_of_date", none) -%} (date '{{ var("as_of_date") }}') {%- else -%} current_date {%- endif -%}
{%- endmacro %}
