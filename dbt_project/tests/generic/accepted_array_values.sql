{#- accepted_values for an array column: every element of every array is one of `values`. -#}
{% test accepted_array_values(model, column_name, values) %}

select {{ column_name }}
from {{ model }}
where any_match(
    {{ column_name }},
    element -> element not in (
        {%- for value in values %}
        '{{ value }}'{{ "," if not loop.last }}
        {%- endfor %}
    )
)

{% endtest %}
