"""The dashboards, defined once: the stack serves them (``lakehouse.services.dashboard``) and
``lakehouse dashboards grafana`` renders the same definition as Grafana JSON for deployments that
have Grafana (``lakehouse.services.grafana``).

A panel reads one source:

- ``prometheus``: PromQL over the stream, Dagster, Kafka and machine metrics (range queries for
  time series, instant queries for stats and tables);
- ``trino``: SQL over the lake as the least-privileged user that can answer it (``{catalog}`` is
  replaced by the configured catalog); a time series' rows are ``(time, series, value)``;
- ``redis``: the newest entries of a Redis stream (``XREVRANGE``), read as the ``reader`` role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["timeseries", "stat", "table", "bars"]
Source = Literal["prometheus", "trino", "redis"]


@dataclass(frozen=True)
class Query:
    text: str  # PromQL, SQL, or a Redis stream key
    legend: str = ""  # Prometheus legend template ("{{query}}"); a series name otherwise


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    kind: Kind
    source: Source
    queries: tuple[Query, ...]
    unit: str = ""  # shown beside values: "rows/s", "s", "records", "%"
    description: str = ""
    width: int = 12  # of 24 grid columns


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]


def _prom(id: str, title: str, kind: Kind, *queries: tuple[str, str], **kw: str | int) -> Panel:
    return Panel(id, title, kind, "prometheus", tuple(Query(t, legend) for t, legend in queries), **kw)  # type: ignore[arg-type]


def _sql(id: str, title: str, kind: Kind, sql: str, **kw: str | int) -> Panel:
    return Panel(id, title, kind, "trino", (Query(" ".join(sql.split())),), **kw)  # type: ignore[arg-type]


_LAST_HOUR = "current_timestamp - INTERVAL '1' HOUR"

PIPELINE = Dashboard(
    "lakehouse-pipeline",
    "Pipeline health",
    "Every stream's throughput, lag, batch time and end-to-end latency; drivers alive; alerts firing.",
    (
        _prom(
            "input_rate",
            "Rows read per second",
            "timeseries",
            ("sum by (query) (rate(lakehouse_stream_input_rows_total[2m]))", "{{query}}"),
            unit="rows/s",
            description="What each query read: Kafka records (bronze), bronze rows (refine), gold changes (serving).",
        ),
        _prom(
            "kafka_lag",
            "Kafka lag",
            "timeseries",
            ("sum by (query) (lakehouse_stream_kafka_lag_records)", "{{query}}"),
            unit="records",
            description="Records between each bronze query's last batch and the end of its topic.",
        ),
        _prom(
            "batch_p95",
            "Micro-batch duration, p95 over 5 minutes",
            "timeseries",
            (
                "histogram_quantile(0.95, sum by (query, le) "
                "(rate(lakehouse_stream_batch_duration_seconds_bucket[5m])))",
                "{{query}}",
            ),
            unit="s",
        ),
        _prom(
            "latency",
            "Event to commit latency (p50, p99 over 5 minutes)",
            "timeseries",
            (
                "histogram_quantile(0.5, sum by (query, le) "
                '(rate(lakehouse_stream_event_latency_seconds_bucket{since="event_time"}[5m])))',
                "p50 {{query}}",
            ),
            (
                "histogram_quantile(0.99, sum by (query, le) "
                '(rate(lakehouse_stream_event_latency_seconds_bucket{since="event_time"}[5m])))',
                "p99 {{query}}",
            ),
            unit="s",
            description="From an event's own time to the commit of the silver/gold batch that holds it.",
        ),
        _prom(
            "kafka_latency",
            "Kafka append to bronze commit (p99 over 5 minutes)",
            "timeseries",
            (
                "histogram_quantile(0.99, sum by (query, le) "
                '(rate(lakehouse_stream_event_latency_seconds_bucket{since="kafka"}[5m])))',
                "{{query}}",
            ),
            unit="s",
        ),
        _prom(
            "kafka_in",
            "Kafka: records in per second",
            "timeseries",
            ('sum by (topic) (rate(kafka_topic_messages_in_total{topic!~"__.*"}[2m]))', "{{topic}}"),
            unit="records/s",
            description="What producers append to each topic (the broker's own count, JMX exporter; "
            "Kafka's internal topics left out).",
        ),
        _prom(
            "kafka_retention",
            "Kafka: fullest partition, share of its retention",
            "timeseries",
            ('100 * max by (topic) (kafka_log_size_bytes{topic!~"__.*"}) / 1073741824', "{{topic}}"),
            unit="%",
            description="At 100 % Kafka deletes the oldest records; a stream behind them loses them "
            "(LakehouseKafkaNearRetention pages before).",
        ),
        _prom(
            "trino_queries",
            "Trino: queries running and queued; failed per minute",
            "timeseries",
            ("trino_execution_name_QueryManager_RunningQueries", "running"),
            ("trino_execution_name_QueryManager_QueuedQueries", "queued"),
            ("60 * rate(trino_execution_name_QueryManager_FailedQueries[2m])", "failed/min"),
            description="The coordinator's own count (its /metrics): analysts' SQL, dbt and these dashboards. Queued "
            "for long: the coordinator is saturated; failed: `SELECT * FROM system.runtime.queries WHERE state = "
            "'FAILED'` says why (a user error, or a table Trino cannot read).",
        ),
        _prom(
            "trino_time",
            "Trino: query execution time, p50 and p95 over 5 minutes",
            "timeseries",
            ('trino_execution_name_QueryManager_ExecutionTime_FiveMinutes{quantile="0.5"} / 1000', "p50"),
            ('trino_execution_name_QueryManager_ExecutionTime_FiveMinutes{quantile="0.95"} / 1000', "p95"),
            unit="s",
            description="From a query's start to its end, queueing excluded (Trino's decaying 5-minute distribution).",
        ),
        _prom(
            "heartbeat",
            "Seconds since each driver's heartbeat",
            "stat",
            ("time() - lakehouse_stream_heartbeat_timestamp_seconds", "{{app}}"),
            unit="s",
            description="Over 30 s for 30 s pages (LakehouseStreamDown).",
        ),
        _prom(
            "dagster",
            "Dagster: webserver answering, daemon's oldest heartbeat",
            "stat",
            ("lakehouse_dagster_webserver_up", "webserver up (1 = yes)"),
            ('max(lakehouse_dagster_daemon_heartbeat_age_seconds{required="true"})', "daemon heartbeat, s ago"),
            description="The daemon runs schedules, sensors (the stream supervisors) and the run queue; it beats "
            "every 30 s. Over 90 s for 30 s pages (LakehouseDagsterDaemonDown).",
        ),
        _prom(
            "alerts",
            "Alerts firing",
            "table",
            ('ALERTS{alertstate="firing"}', "{{alertname}} {{severity}} {{app}}{{query}}{{stream}}{{job}}"),
            description="What Prometheus sends to Alertmanager now; docs/runbook.md says what to do.",
            width=24,
        ),
    ),
)

FRAUD = Dashboard(
    "lakehouse-fraud",
    "Fraud",
    "Alerts per minute by rule (gold.fraud_alerts through Trino) and the newest alerts as services read them (Redis).",
    (
        _sql(
            "alerts_per_minute",
            "Fraud alerts per minute by rule (last hour)",
            "timeseries",
            f"""SELECT date_trunc('minute', detected_at) AS t, rule AS series, count(*) AS value
            FROM {{catalog}}.gold.fraud_alerts CROSS JOIN UNNEST(rules) AS r(rule)
            WHERE detected_at > {_LAST_HOUR} GROUP BY 1, 2 ORDER BY 1""",
            unit="alerts/min",
        ),
        Panel(
            "newest_alerts",
            "Newest fraud alerts (Redis fraud:alerts)",
            "table",
            "redis",
            (Query("fraud:alerts"),),
            description="The 20 newest entries of the stream services read (contracts §5).",
            width=24,
        ),
    ),
)

CLICKSTREAM = Dashboard(
    "lakehouse-clickstream",
    "Clickstream",
    "Top pages and the session funnel of the last hour.",
    (
        _sql(
            "top_pages",
            "Top pages by views (last hour)",
            "bars",
            f"""SELECT page, sum(views) AS views FROM {{catalog}}.gold.page_minute
            WHERE window_start > {_LAST_HOUR} GROUP BY 1 ORDER BY 2 DESC LIMIT 10""",
            unit="views",
        ),
        _sql(
            "funnel",
            "Session funnel (last hour)",
            "bars",
            f"""SELECT step, sessions FROM (
              SELECT count(DISTINCT IF(event_type = 'page_view', session_id)) AS v,
                     count(DISTINCT IF(event_type = 'add_to_cart', session_id)) AS c,
                     count(DISTINCT IF(event_type = 'purchase', session_id)) AS p
              FROM {{catalog}}.silver.clickstream WHERE event_time > {_LAST_HOUR})
            CROSS JOIN UNNEST(ARRAY['1 viewed a page', '2 added to cart', '3 purchased'], ARRAY[v, c, p])
              AS f(step, sessions)""",
            unit="sessions",
        ),
    ),
)

IOT = Dashboard(
    "lakehouse-iot",
    "IoT",
    "Readings outside their sensor type's normal range, per device and sensor.",
    (
        _sql(
            "anomalies_per_minute",
            "Anomalies per minute by sensor type (last hour)",
            "timeseries",
            f"""SELECT window_start AS t, sensor_type AS series, sum(anomalies) AS value
            FROM {{catalog}}.gold.device_minute WHERE window_start > {_LAST_HOUR} GROUP BY 1, 2 ORDER BY 1""",
            unit="anomalies",
        ),
        _sql(
            "anomalous_devices",
            "Devices with anomalies (last hour)",
            "table",
            f"""SELECT device_id, sensor_type, sum(anomalies) AS anomalies, sum(readings) AS readings,
              round(min(value_min), 2) AS min, round(max(value_max), 2) AS max
            FROM {{catalog}}.gold.device_minute WHERE window_start > {_LAST_HOUR}
            GROUP BY 1, 2 HAVING sum(anomalies) > 0 ORDER BY 3 DESC LIMIT 15""",
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (PIPELINE, FRAUD, CLICKSTREAM, IOT)
#: Trino user per dashboard's SQL: gold and silver without raw PII is the analyst's.
TRINO_USER = "analyst"


def panel(dashboard_uid: str, panel_id: str) -> Panel:
    for d in DASHBOARDS:
        if d.uid == dashboard_uid:
            for p in d.panels:
                if p.id == panel_id:
                    return p
    raise KeyError(f"no panel {panel_id!r} on dashboard {dashboard_uid!r}")
