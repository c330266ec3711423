{#- The days an incremental run rebuilds: the partition window Dagster passes, reopened by the late-data window. -#}
{% macro window_start() -%}
    {%- if var("min_date", none) -%} (date '{{ var("min_date") }}' - {{ var("late_days") }}) {%- else -%} (date '-infinity') {%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
    {%- if var("max_date", none) -%} (date '{{ var("max_date") }}') {%- else -%} (date 'infinity') {%- endif -%}
{%- endmacro %}

{#- The day segments and customer_360 are computed as of: the run's last day (Dagster passes it), else today. -#}
{% macro as_of_date() -%}
    {%- if var("as_of_date", none) -%} (date '{{ var("as_of_date") }}') {%- else -%} current_date {%- endif -%}
{%- endmacro %}
