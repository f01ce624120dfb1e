{#-
  A deterministic row key from the columns of a model's grain: md5 of the JSON array of
  their text values (JSON, not a plain delimiter, so 'a|b' + 'c' never equals 'a' + 'b|c';
  NULL stays distinct from the text 'null').
-#}
{% macro surrogate_key(columns) -%}
    lower(to_hex(md5(to_utf8(json_format(cast(array[
        {%- for column in columns %}
        cast({{ column }} as varchar){{ "," if not loop.last }}
        {%- endfor %}
    ] as json))))))
{%- endmacro %}
