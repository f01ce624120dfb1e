"""dbt_project/ through dagster-dbt: every model an asset downstream of the silver/gold tables it reads.

Asset keys follow the lake's ``[layer, table]``: the dbt sources ``silver.*`` and ``gold.*``
*are* the stream assets (``silver/payments``, ``gold/merchant_minute`` ...), so the staging
views (``staging/stg_*``, group ``staging``) and the marts (``marts/mart_*``, group
``marts``) hang below them in the global lineage. Every dbt data test is an asset check of
the model it tests (error severity: blocking, warn: not); the unit tests run inside
``dbt build`` (a failing one fails the run) but are not asset checks, since they read no table.

The ``dbt_marts`` job runs ``dbt build`` (views, unit tests, marts and tests in DAG order)
against the Trino of the platform's settings (``trino_url``, user ``dbt``,
``trino_catalog``; a run may override them like the Spark jobs: ``settings: {...}``).
"""

import shutil
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from lakehouse.settings import Settings, temporary_env
from lakehouse.tables import GOLD, QUARANTINE, SILVER
from orchestration.defs.dbt.project import DBT_EXECUTABLE, prepare_manifest, project
from orchestration.defs.streaming.tables import OWNER, table_key
from orchestration.lib.config import SettingsRunConfig
from orchestration.lib.jobs import asset_job, schedule

#: The lake tables a dbt source may name, by (schema, table) as Trino sees them.
LAKE_TABLES = {(spec.layer, spec.name): spec for spec in (*SILVER.values(), QUARANTINE, *GOLD.values())}
#: dbt writes its artifacts per run under here; the newest are kept for debugging.
RUNS_DIR = project.project_dir / project.target_path / "runs"
KEEP_RUNS = 20


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt sources -> the existing lake table assets; models -> ``[schema, model]`` grouped by schema."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        props = dbt_resource_props
        if props["resource_type"] == "source":
            spec = LAKE_TABLES.get((props["schema"], props["name"]))
            if spec is None:
                raise dg.DagsterInvalidDefinitionError(
                    f"dbt source {props['source_name']}.{props['name']}: not a table of lakehouse/tables.py"
                )
            return table_key(spec)
        if props["resource_type"] == "model":
            return dg.AssetKey([props["schema"], props["name"]])
        return super().get_asset_key(props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "model":
            return str(dbt_resource_props["schema"])  # staging / marts
        return super().get_group_name(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [OWNER]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        if dbt_resource_props["resource_type"] == "model":
            tags["layer"] = str(dbt_resource_props["schema"])
        return tags


translator = LakehouseDbtTranslator(
    settings=DagsterDbtTranslatorSettings(
        # Every data test on a model is an asset check of it (the default, stated).
        enable_asset_checks=True,
        # Tests on sources (none today) stay observations of silver/gold rather than checks
        # of assets this op does not materialize.
        enable_source_tests_as_checks=False,
    )
)


class DbtRunConfig(SettingsRunConfig):
    """dbt reads trino_url and trino_catalog of the run's settings; it logs in as Trino user `dbt`."""


def dbt_env(s: Settings) -> dict[str, str]:
    """What dbt_project/profiles.yml reads, from the platform's settings: Trino over HTTPS as user `dbt`
    (it owns the marts), its password from the secrets (dbt's environment only, for the build)."""
    return {
        "LAKEHOUSE_TRINO_HOST": s.trino_address[0],
        "LAKEHOUSE_TRINO_PORT": str(s.trino_address[1]),
        "LAKEHOUSE_TRINO_USER": "dbt",
        "LAKEHOUSE_TRINO_PASSWORD": s.secret("trino_dbt").get_secret_value(),
        "LAKEHOUSE_TRINO_CA": str(s.ca_file),
        "LAKEHOUSE_TRINO_CATALOG": s.trino_catalog,
        # dbt-trino hands the CA to a requests session, whose CA REQUESTS_CA_BUNDLE (set on many machines)
        # overrides: point it at the local CA for dbt, which talks to Trino only.
        "REQUESTS_CA_BUNDLE": str(s.ca_file),
        "DO_NOT_TRACK": "1",
    }


def _prune_runs(keep: int = KEEP_RUNS) -> None:
    if not RUNS_DIR.is_dir():
        return
    runs = sorted((d for d in RUNS_DIR.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _build() -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=prepare_manifest(),
        project=project,
        dagster_dbt_translator=translator,
        name="dbt_models",
        op_tags={"lakehouse/kind": "dbt"},
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtRunConfig) -> Iterator[Any]:
        s = config.resolve()
        context.log.info(f"dbt build against Trino {s.trino_url}, catalog {s.trino_catalog}, user dbt")
        _prune_runs(KEEP_RUNS - 1)
        with temporary_env(dbt_env(s)):  # DbtCliResource hands os.environ to dbt
            invocation = dbt.cli(["build"], context=context, target_path=RUNS_DIR / context.run.run_id)
        yield from invocation.stream()

    return dbt_models


# Bound here, not in orchestration/definitions.py: the package loader collects assets, jobs and
# schedules, not resources. (Only the bound definition is at module level: the loader would
# otherwise find the same asset keys twice.)
dbt_resource = DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)
[dbt_models] = dg.with_resources([_build()], {"dbt": dbt_resource})

dbt_marts = asset_job(
    "dbt_marts",
    dg.AssetSelection.assets(dbt_models),
    "dbt build over Trino: the staging views on silver and gold, the dbt unit tests, the marts "
    "(merchant daily revenue and fraud, hourly page funnel, daily device health) and every dbt "
    "data test as an asset check.",
    kind="dbt",
)

dbt_marts_schedule = schedule(
    dbt_marts,
    "45 * * * *",
    "Every hour at :45, after gold's :40 catch-up: dbt build of the staging views, marts and tests.",
    name="dbt_marts_hourly",
)
