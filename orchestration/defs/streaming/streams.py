"""The streams as Dagster assets: one multi-asset per Spark app, over the tables it writes.

Materializing ``bronze_stream`` (``refine_stream``, ``serving_stream``) runs spark_apps/<layer>.py
through Pipes: bronze lands Kafka in bronze, refine turns bronze into silver and gold in one
pass (one query per topic), serving projects gold into Redis. ``mode: available_now`` (the
default, so "Materialize all" in the UI ends) catches up and exits; ``mode: continuous`` runs
until the run is terminated, reporting each micro-batch as an AssetObservation. The jobs
``stream_<layer>`` (continuous, supervised by ``supervise_<layer>``) and ``catchup_<layer>``
(available-now, scheduled) select the same asset with fixed modes.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from lakehouse.contracts import TOPICS
from lakehouse.services.streams import STREAMS
from lakehouse.tables import GOLD
from orchestration.defs.streaming.tables import LAYER_SPECS, REDIS_KEY
from orchestration.lib.config import SparkRunConfig
from orchestration.lib.jobs import asset_job
from orchestration.lib.spark import SparkApp, SparkPipes

if TYPE_CHECKING:  # what define_asset_job returns; `dagster` does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

LAYERS = STREAMS  # one asset, job and supervisor per stream
STREAM_TAG = "lakehouse/stream"


class StreamConfig(SparkRunConfig):
    mode: Literal["continuous", "available_now"] = Field(
        "available_now",
        description="available_now: catch up with what is there, then end. continuous: run until the run is stopped.",
    )


def query_assets(layer: str, query: str) -> list[dg.AssetKey]:
    """The tables one query (``<layer>_<source>``) writes."""
    source = query.split("_", 1)[1] if "_" in query else ""
    if layer == "bronze":
        return [dg.AssetKey(["bronze", source])]
    if layer == "serving":
        return [REDIS_KEY]
    return [
        dg.AssetKey(["silver", source]),
        dg.AssetKey(["silver", "quarantine"]),
        *[dg.AssetKey(["gold", name]) for name, spec in GOLD.items() if source in spec.inputs],
    ]


def observe(message: Mapping[str, Any]) -> Sequence[dg.AssetKey]:
    """Which assets a progress message is about (messages name their query)."""
    query = str(message.get("query") or "")
    layer = query.split("_", 1)[0]
    if layer not in LAYERS:
        return []
    return query_assets(layer, query)


def _stream_asset(layer: str) -> dg.AssetsDefinition:
    specs = LAYER_SPECS[layer]

    @dg.multi_asset(
        name=f"{layer}_stream",
        specs=specs,
        description=(
            "spark_apps/serving.py: gold's change feed -> Redis (one query per served gold table), via Pipes."
            if layer == "serving"
            else "spark_apps/refine.py: bronze -> silver and gold in one pass (validate, deduplicate, aggregate, "
            f"judge fraud), one query per topic ({', '.join(t.name for t in TOPICS)}), via Pipes."
            if layer == "refine"
            else f"spark_apps/{layer}.py: the {layer} stream ({', '.join(t.name for t in TOPICS)}), via Pipes."
        ),
        op_tags={STREAM_TAG: layer},
    )
    def _stream(context: dg.AssetExecutionContext, config: StreamConfig, spark: SparkPipes) -> Iterator[Any]:
        continuous = config.mode == "continuous"
        app = SparkApp(
            layer,
            ["--continuous" if continuous else "--available-now"],
            observe=observe,
            continuous=continuous,
            materialize=[spec.key for spec in specs],
            # Redis's freshness is the time of its last materialization: keep it current while the stream runs.
            rematerialize_s=60.0 if layer == "serving" else None,
        )
        yield from spark.run(context, config.resolve(), app, config.master)

    return _stream


stream_assets = {layer: _stream_asset(layer) for layer in LAYERS}


def _job(layer: str, mode: str) -> "UnresolvedAssetJobDefinition":
    kind = "stream" if mode == "continuous" else "catchup"
    return asset_job(
        f"{kind}_{layer}",
        # Without the quality checks: a continuous run never "finishes" for them to follow,
        # and periodic catch-ups stay lean; `catchup_pipeline` and `quality` run the checks.
        dg.AssetSelection.assets(stream_assets[layer]).without_checks(),
        (
            f"The {layer} stream, continuous: runs until stopped (`lakehouse stream stop {layer}`)."
            if mode == "continuous"
            else f"Catch the {layer} stream up (available-now), then end: streams as periodic batches."
        ),
        config={"ops": {f"{layer}_stream": {"config": {"mode": mode}}}},
        tags={STREAM_TAG: layer, "lakehouse/mode": mode},
    )


stream_jobs = {layer: _job(layer, "continuous") for layer in LAYERS}
catchup_jobs = {layer: _job(layer, "available_now") for layer in LAYERS}

# Periodic batch for sites that do not run streams continuously; off until switched on.
CATCHUP_CRON = {
    "bronze": "*/15 * * * *",
    "refine": "5,20,35,50 * * * *",
    "serving": "10,25,40,55 * * * *",
}
#: Run statuses that hold a stream's slot in the run queue (one run per ``lakehouse/stream`` tag).
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def catchup_decision(layer: str, busy: list[dg.RunRecord]) -> dg.RunRequest | dg.SkipReason:
    """A catch-up of LAYER, unless a run of the stream holds its slot: the queue admits one run per stream,
    so a tick behind a continuous stream would wait forever, and the queue would grow by one each tick."""
    if busy:
        run = busy[0].dagster_run
        how = "continuous" if run.tags.get("lakehouse/mode") == "continuous" else run.job_name
        return dg.SkipReason(
            f"{layer} is already running ({how}, run {run.run_id[:8]}, {run.status.value}): "
            "nothing to catch up that it does not read itself"
        )
    return dg.RunRequest()


def _catchup_schedule(layer: str) -> dg.ScheduleDefinition:
    job = catchup_jobs[layer]

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=CATCHUP_CRON[layer],
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Every 15 minutes, staggered after the layer it reads: {layer} catches up and ends. "
            f"A tick while a {layer} run is in progress (the continuous stream) is skipped, with the reason."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        busy = context.instance.get_run_records(
            filters=dg.RunsFilter(tags={STREAM_TAG: layer}, statuses=IN_PROGRESS), limit=1
        )
        return catchup_decision(layer, list(busy))

    return _schedule


catchup_schedules = [_catchup_schedule(layer) for layer in LAYERS]

# Lists, so the package loader collects them (it does not look inside dicts).
stream_asset_defs = list(stream_assets.values())
stream_job_defs = [*stream_jobs.values(), *catchup_jobs.values()]
