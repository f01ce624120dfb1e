"""Metrics to the stack's Prometheus pushgateway, through dagster-prometheus.

- streams push their own ``lakehouse_stream_*`` metrics, whoever launched them (``spark_apps/_metrics.py``);
- runs: each job's last status, duration and end time (pushed by the run status sensors of
  ``orchestration/defs/metrics.py`` through :func:`push_run`);
- supervisors: ``lakehouse_stream_supervisor_restart`` (the restart count) and
  ``lakehouse_stream_supervisor_gave_up`` (1 once it stopped restarting a failing stream);
- quality: ``lakehouse_quality_check_passed`` and failing-row counts per check.

A pushgateway that is down is logged and skipped: metrics never fail a stream or a job.
"""

import base64
from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster_prometheus import PrometheusResource
from prometheus_client import CollectorRegistry, Gauge

from lakehouse.settings import get_settings


def prometheus_resource() -> PrometheusResource:
    return PrometheusResource(gateway=get_settings().pushgateway_url, timeout=5)


def _secure_handler() -> Callable[..., Callable[[], None]]:
    """prometheus_client's push handler over TLS (the local CA) with the pushgateway's `pusher` login."""
    import ssl
    import urllib.request

    s = get_settings()
    context = ssl.create_default_context(cafile=str(s.ca_file))
    token = base64.b64encode(":".join(s.http_auth("pusher")).encode()).decode()

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def handle() -> None:
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (the settings' https URL)
            for name, value in headers:
                request.add_header(name, value)
            request.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                if response.status >= 400:
                    raise OSError(f"pushgateway answered {response.status}")

        return handle

    return handler


def _push(prometheus: PrometheusResource, registry: CollectorRegistry, job: str, log: Any, **grouping: str) -> None:
    import prometheus_client

    try:
        prometheus_client.push_to_gateway(
            prometheus.gateway,
            job=job,
            registry=registry,
            grouping_key=grouping or None,
            timeout=prometheus.timeout,
            handler=_secure_handler(),
        )
    except OSError as e:  # URLError (refused, TLS, 401), timeouts
        log.warning(f"pushgateway {prometheus.gateway} unreachable, metrics for {job} skipped: {e}")


def push_check_results(
    prometheus: PrometheusResource, results: list[dg.AssetCheckResult], layer: str, log: Any
) -> None:
    """One group per layer: a push replaces its group, and silver and gold checks run apart."""
    registry = CollectorRegistry()
    passed = Gauge(
        "lakehouse_quality_check_passed", "1 if the check passed", ["asset", "check", "severity"], registry=registry
    )
    unexpected = Gauge(
        "lakehouse_quality_unexpected_rows", "Rows failing the check", ["asset", "check"], registry=registry
    )
    for r in results:
        asset = r.asset_key.to_user_string() if r.asset_key else ""
        passed.labels(asset, r.check_name or "", r.severity.value).set(1 if r.passed else 0)
        count = r.metadata.get("unexpected_count")
        raw = getattr(count, "value", count)
        if isinstance(raw, int | float):
            unexpected.labels(asset, r.check_name or "").set(raw)
    _push(prometheus, registry, "lakehouse_quality", log, layer=layer)


def push_restart(prometheus: PrometheusResource, stream: str, restart: int, log: Any) -> None:
    registry = CollectorRegistry()
    Gauge(
        "lakehouse_stream_supervisor_restart",
        "Consecutive-failure count of the supervisor's last launch (0: a normal start)",
        ["stream"],
        registry=registry,
    ).labels(stream).set(restart)
    _push(prometheus, registry, "lakehouse_supervisor", log, stream=stream)


def push_gave_up(prometheus: PrometheusResource, stream: str, failures: int | None, log: Any) -> None:
    """``lakehouse_stream_supervisor_gave_up`` for STREAM after FAILURES, or (None) no longer: the
    stream runs or was launched again, however (the group is deleted)."""
    job, grouping = "lakehouse_supervisor_gave_up", {"stream": stream}
    if failures is None:
        import prometheus_client

        try:
            prometheus_client.delete_from_gateway(
                prometheus.gateway,
                job=job,
                grouping_key=grouping,
                timeout=prometheus.timeout,
                handler=_secure_handler(),
            )
        except OSError as e:
            log.warning(f"pushgateway {prometheus.gateway} unreachable, {job} of {stream} not cleared: {e}")
        return
    registry = CollectorRegistry()
    Gauge(
        "lakehouse_stream_supervisor_gave_up",
        "Consecutive failures after which the supervisor stopped restarting the stream (present only then)",
        ["stream"],
        registry=registry,
    ).labels(stream).set(failures)
    _push(prometheus, registry, job, log, **grouping)


def push_run(context: dg.RunStatusSensorContext, prometheus: PrometheusResource) -> None:
    run = context.dagster_run
    record = context.instance.get_run_record_by_id(run.run_id)
    registry = CollectorRegistry()
    labels = ["dagster_job"]  # not "job": the pushgateway's grouping label
    status = run.status.value
    Gauge("lakehouse_dagster_run_success", "1 if the job's last run succeeded", labels, registry=registry).labels(
        run.job_name
    ).set(1 if status == "SUCCESS" else 0)
    Gauge(
        "lakehouse_dagster_run_last_end_timestamp_seconds", "End of the job's last run", labels, registry=registry
    ).labels(run.job_name).set((record.end_time if record else None) or 0)
    if record and record.start_time and record.end_time:
        Gauge(
            "lakehouse_dagster_run_duration_seconds", "Duration of the job's last run", labels, registry=registry
        ).labels(run.job_name).set(record.end_time - record.start_time)
    last = Gauge("lakehouse_dagster_run_last_status", "Last run status", ["dagster_job", "status"], registry=registry)
    last.labels(run.job_name, status).set(1)
    _push(prometheus, registry, "lakehouse_runs", context.log, run_job=run.job_name)
