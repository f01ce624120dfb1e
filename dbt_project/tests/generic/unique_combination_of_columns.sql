{#- The grain of a model: no two rows share the same values of these columns. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(", ") }},
    count(*) as duplicate_rows
from {{ model }}
group by {{ combination_of_columns | join(", ") }}
having count(*) > 1

{% endtest %}
