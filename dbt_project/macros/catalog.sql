{#
  `dbt docs generate` reads Trino's catalog. dbt-trino does it in one query that scans
  information_schema.columns and system.metadata.table_comments side by side and inner-joins
  them. In Trino 476 the Delta connector's per-query snapshot bookkeeping
  (DeltaLakeMetadata.getSnapshot: `checkState(latestTableVersions.put(...) == null)`) is not safe
  when two scans of one query load the same table at the same moment: the loser fails with
  "latestTableVersions changed concurrently for <table>", the system table logs "Failed to get
  comment for relation" and drops the row, and the inner join then drops the whole table from
  catalog.json, at random (CI lost silver.clickstream once, a mart another time).

  Here each system table is read by a query of its own, one scan of the schemas each: the table
  comments, then the tables, and these are handed to the columns query as literal rows, so no query
  loads a table's snapshot from two scans at once (information_schema.tables filtered by table
  name looks each table up too). The join on the comments is a left join: a table whose comment
  cannot be read keeps its columns. The other macros named here are dbt-trino's own.
#}

{% macro trino__get_catalog(information_schema, schemas) -%}
    {{ return(lakehouse_get_catalog(information_schema, schemas, trino__get_catalog_schemas_where_clause_sql(schemas))) }}
{%- endmacro %}


{% macro trino__get_catalog_relations(information_schema, relations) -%}
    {%- set schemas = relations | map(attribute="schema") | unique | list -%}
    {{ return(lakehouse_get_catalog(information_schema, schemas, trino__get_catalog_relations_where_clause_sql(relations))) }}
{%- endmacro %}


{#- `columns_where` narrows the one scan that loads table snapshots; the others list whole schemas
    (a comment or table row nobody asked for is dropped by the join). -#}
{% macro lakehouse_get_catalog(information_schema, schemas, columns_where) -%}
    {%- set comments = run_query(trino__get_catalog_table_comment_schemas_sql(information_schema, schemas)) -%}
    {%- set tables_sql -%}
        {{ trino__get_catalog_tables_sql(information_schema) }}
        {{ trino__get_catalog_schemas_where_clause_sql(schemas) }}
    {%- endset -%}
    {%- set tables = run_query(tables_sql) -%}
    {% set query %}
        with tables as (
            {{ lakehouse_rows(tables, ["table_database", "table_schema", "table_name", "table_type", "table_owner"]) }}
        ),
        columns as (
            {{ trino__get_catalog_columns_sql(information_schema) }}
            {{ columns_where }}
        ),
        table_comment as (
            {{ lakehouse_rows(comments, ["table_database", "table_schema", "table_name", "table_comment"]) }}
        )
        select
            table_database,
            table_schema,
            table_name,
            table_type,
            table_owner,
            column_name,
            column_index,
            column_type,
            column_comment,
            table_comment
        from tables
        join columns using ("table_database", "table_schema", "table_name")
        left join table_comment using ("table_database", "table_schema", "table_name")
        order by "column_index"
    {%- endset -%}
    {{ return(run_query(query)) }}
{%- endmacro %}


{#- The rows of an earlier query as a VALUES list of varchars named `names` (none: an empty one). -#}
{% macro lakehouse_rows(result, names) -%}
    {%- set quoted = [] -%}
    {%- for name in names -%}{%- do quoted.append('"' ~ name ~ '"') -%}{%- endfor -%}
    {%- if result is none or result.rows | length == 0 -%}
        select {% for q in quoted -%} cast(null as varchar) as {{ q }}{% if not loop.last %}, {% endif %}{%- endfor %} where false
    {%- else -%}
        select * from (
            values
            {%- for row in result.rows %}
            ({% for value in row -%}
                {%- if value is none -%} cast(null as varchar)
                {%- else -%} varchar '{{ value | string | replace("'", "''") }}'
                {%- endif -%}
                {%- if not loop.last %}, {% endif -%}
            {%- endfor %}){% if not loop.last %},{% endif %}
            {%- endfor %}
        ) as t({{ quoted | join(", ") }})
    {%- endif -%}
{%- endmacro %}
