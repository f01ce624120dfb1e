"""dbt (dbt_project/) as Dagster assets: staging views and marts downstream of silver and gold, tests as checks."""
