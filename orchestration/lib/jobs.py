"""A job and its schedule, declared the one way every domain declares them.

Every job runs its steps in the run worker's process (``in_process_executor``): each step
launches a Spark app or dbt, which does the work in its own process, so a multiprocess
executor would only add a Python start per step. Every schedule starts switched off: a fresh
install runs nothing on its own until an operator turns schedules on (UI or
``dagster schedule start``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:  # what define_asset_job returns; `dagster` does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

KIND_TAG = "lakehouse/kind"


def asset_job(
    name: str,
    selection: dg.AssetSelection,
    description: str,
    *,
    kind: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> UnresolvedAssetJobDefinition:
    """An asset job run in process, tagged ``lakehouse/kind: KIND`` (when given) plus TAGS."""
    return dg.define_asset_job(
        name=name,
        selection=selection,
        description=description,
        config=dict(config) if config is not None else None,
        tags={**({KIND_TAG: kind} if kind else {}), **(tags or {})},
        executor_def=dg.in_process_executor,
    )


def schedule(
    job: dg.JobDefinition | UnresolvedAssetJobDefinition, cron: str, description: str, *, name: str | None = None
) -> dg.ScheduleDefinition:
    """JOB on CRON (UTC), switched off until an operator turns it on; named ``<job>_schedule`` by default."""
    return dg.ScheduleDefinition(
        name=name or f"{job.name}_schedule",
        job=job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
