"""Run status sensors: every finished run's status and duration to the pushgateway (on by default)."""

import dagster as dg
from dagster_prometheus import PrometheusResource

from orchestration.lib.metrics import push_run


def _status_sensor(status: dg.DagsterRunStatus) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        run_status=status,
        name=f"run_metrics_{status.value.lower()}",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Pushes each {status.value.lower()} run's status and duration to the pushgateway.",
        minimum_interval_seconds=15,
    )
    def _sensor(context: dg.RunStatusSensorContext, prometheus: PrometheusResource) -> None:
        push_run(context, prometheus)

    return _sensor


run_metric_sensors = [
    _status_sensor(s) for s in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
]
