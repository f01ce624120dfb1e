"""The fraud fast path: one Flink job (``fastpath/jvm``) from Kafka ``payments`` to Redis alerts.

Beside the micro-batch chain (Kafka -> bronze -> silver -> gold -> Redis), which waits for a
trigger and a Delta commit at every hop, the fast path judges each payment as it arrives, with
the same rules code as gold (``jvm/core``: ``CardJudge``, ``UserJudge``), and writes the alert
with the serving writer's own Lua scripts, marked ``path = fast``. Gold stays the system of
record; its later write of the same verdict is a no-op, a different one replaces the entry
(``lakehouse.serving.writer``); ``fastpath_agrees_with_gold`` (Dagster) names every difference.

One process: ``java … lakehouse.fastpath.FastPath <job.json>``, Flink in a per-job MiniCluster
(``lakehouse.services.flink``). Its configuration is a JSON file written here (no secret in it or
on the command line: the PII key and the Redis password reach the JVM through its environment).
Checkpoints under ``<checkpoints>/fastpath/`` are retained when the job stops, and the next
start restores the newest one, so a restart (after SIGKILL too) resumes where the last
checkpoint was; what it replays is written again with the same digests, so nothing is doubled.
Kafka offsets are committed to the consumer group ``lakehouse-fastpath`` on each checkpoint
(what ``lakehouse stream status`` and outside lag tools read). Metrics are pushed to the
pushgateway (job ``lakehouse-fastpath``): the JVM listens on no port.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lakehouse.clients import FASTPATH_GROUP, java_config
from lakehouse.contracts import WATERMARK_MINUTES, schema
from lakehouse.services import flink, streams
from lakehouse.settings import FLINK_KEYSTORE, FLINK_TRUSTSTORE, Settings, write_private
from lakehouse.validation import fields, program

#: The stream's name (``lakehouse stream run fastpath``, its lock, its checkpoints, its Dagster asset).
NAME = "fastpath"
MAIN_CLASS = "lakehouse.fastpath.FastPath"
GROUP = FASTPATH_GROUP  # its Kafka ACLs name it (lakehouse.services.kafka.acls)
TOPIC = "payments"
PUSH_JOB = "lakehouse-fastpath"
#: Flink's push reporter over TLS with the pushgateway's login (fastpath/jvm: Flink's own has neither).
PUSH_REPORTER = "org.apache.flink.metrics.prometheus.LakehousePushGatewayReporterFactory"


def checkpoint_dir(s: Settings) -> Path:
    """Flink's checkpoints: beside the streams', or, when those are on the object store, on this machine's
    disk under the state directory (the fast path is one process here, and Flink's S3 plugin is not shipped)."""
    from lakehouse.storage import is_s3

    if is_s3(s.checkpoint_dir):
        return s.state_dir / "fastpath-checkpoints"
    root = s.checkpoint_dir
    assert isinstance(root, Path)
    return root / NAME


def latest_checkpoint(s: Settings) -> Path | None:
    """The newest complete retained checkpoint (``<job id>/chk-N`` with its ``_metadata``), if any."""
    root = checkpoint_dir(s)
    if not root.is_dir():
        return None
    done = [m.parent for m in root.glob("*/chk-*/_metadata")]
    return max(done, key=lambda d: d.stat().st_mtime, default=None)


def redis_config(s: Settings) -> dict[str, Any]:
    """What the job's Redis sink needs: endpoint, key layout, TTLs and the serving writer's scripts."""
    from lakehouse.serving import keys, writer

    return {
        "host": s.redis_address[0],
        "port": s.redis_address[1],
        "user": "writer",
        "password_file": str(s.secret_file("redis_writer")),
        "ca_file": str(s.ca_file),
        "stream": keys.FRAUD_ALERTS_STREAM,
        "marker_prefix": keys.fraud_alert_marker_key(""),
        "user_prefix": keys.fraud_user_key(""),
        "user_alerts_prefix": keys.fraud_user_alerts_key(""),
        "fast_prefix": keys.fraud_fast_alert_key(""),
        "maxlen": keys.FRAUD_ALERTS_MAXLEN,
        "marker_ttl_s": keys.FRAUD_ALERT_MARKER_TTL_S,
        "user_ttl_s": keys.FRAUD_USER_TTL_S,
        "fast_ttl_s": keys.FRAUD_FAST_TTL_S,
        "path_field": keys.ALERT_PATH_FIELD,
        "path": keys.FAST_PATH,
        "upsert_lua": writer.UPSERT_ALERT_LUA,
        "retract_lua": writer.RETRACT_ALERT_LUA,
    }


def flink_config(s: Settings, restore: Path | None) -> dict[str, str]:
    """Flink's configuration for the job: checkpoints, recovery, latency, loopback, metrics."""
    conf = {
        "execution.checkpointing.interval": f"{int(s.fastpath_checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoint_dir(s).resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "2",
        "state.backend.type": "hashmap",
        # Changelog: a checkpoint writes the state changes since the last one (every payment changes a few
        # bytes of two keys) instead of serializing the whole heap state, which grows with the users seen
        # and took half the CPU at 5,000 payments/s; the full state is materialized in the background.
        "state.changelog.enabled": "true",
        "state.changelog.storage": "filesystem",
        "state.changelog.dstl.dfs.base-path": (checkpoint_dir(s) / "changelog").resolve().as_uri(),
        "state.changelog.periodic-materialize.interval": "10 min",
        # Chained operators hand a record over as it is instead of copying it first: every stage emits new
        # objects and none keeps its input after emitting (FastPath.java).
        "pipeline.object-reuse": "true",
        "execution.buffer-timeout.interval": f"{s.fastpath_buffer_timeout_ms} ms",
        "pipeline.auto-watermark-interval": "200 ms",
        # A failure inside the job (Redis unreachable, say) restarts it from the last checkpoint in the same
        # JVM; after the attempts the process exits non-zero and its supervisor takes over.
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": "10",
        "jobmanager.bind-host": s.host,
        "jobmanager.rpc.address": s.host,
        "taskmanager.bind-host": s.host,
        "taskmanager.host": s.host,
        "rest.bind-address": s.host,
        "rest.address": s.host,
        # The MiniCluster's REST endpoint (it can cancel the job) and its internal endpoints (the blob
        # server) take only clients with a certificate of the stack's CA: mutual TLS. The stores' password
        # is read from its file by FastPath.java (flink_secret_files), never written into job.json.
        "security.ssl.rest.enabled": "true",
        "security.ssl.rest.authentication-enabled": "true",
        "security.ssl.internal.enabled": "true",
        # The stack's key is EC P-256: ECDSA suites (Flink's default list is RSA only), TLS 1.3 first.
        "security.ssl.protocol": "TLSv1.3,TLSv1.2",
        "security.ssl.algorithms": "TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256,"
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        **{
            f"security.ssl.{scope}.{key}": str(s.secrets_dir / store)
            for scope in ("rest", "internal")
            for key, store in (("keystore", FLINK_KEYSTORE), ("truststore", FLINK_TRUSTSTORE))
        },
        **{
            f"security.ssl.{scope}.{kind}-type": "PKCS12"
            for scope in ("rest", "internal")
            for kind in ("keystore", "truststore")
        },
        "metrics.reporter.prom.factory.class": PUSH_REPORTER,
        "metrics.reporter.prom.hostUrl": s.pushgateway_url,
        "metrics.reporter.prom.user": "pusher",
        "metrics.reporter.prom.passwordFile": str(s.secret_file("prometheus_pusher")),
        "metrics.reporter.prom.caFile": str(s.ca_file),
        "metrics.reporter.prom.jobName": PUSH_JOB,
        "metrics.reporter.prom.randomJobNameSuffix": "false",
        "metrics.reporter.prom.deleteOnShutdown": "true",
        "metrics.reporter.prom.interval": "10 SECONDS",
    }
    if restore is not None:
        conf["execution.state-recovery.path"] = restore.resolve().as_uri()
        # The job owns its retained checkpoints: CLAIM lets it build on the restored one (and delete it once
        # subsumed); NO_CLAIM would need a full snapshot first, which the changelog backend cannot take.
        conf["execution.state-recovery.claim-mode"] = "CLAIM"
    return conf


def job_config(s: Settings, restore: Path | None = None) -> dict[str, Any]:
    """The job's whole configuration (``job.json``): where its secrets are, never their values."""
    return {
        "name": f"lakehouse-{NAME}",
        "bootstrap": s.bootstrap_servers,
        "kafka": java_config(s, "fastpath"),  # SASL_SSL; the password stays in its file
        "topic": TOPIC,
        "group": GROUP,
        "start": s.fastpath_start,
        "fetch_wait_ms": s.fastpath_fetch_wait_ms,
        "parallelism": 1,
        "validator": program(fields(schema(TOPIC))),
        "pii_key_file": str(s.secret_file("pii_hmac_key")),
        "late_horizon_ms": int(s.fraud_late_horizon_minutes * 60_000),
        "retention_ms": s.fraud_state_retention_days * 86_400_000,
        "watermark_delay_ms": WATERMARK_MINUTES * 60_000,
        "max_clock_skew_ms": int(s.max_clock_skew_s * 1000),
        "redis": redis_config(s),
        "flink": flink_config(s, restore),
        # Flink settings whose values are secrets: FastPath.java reads each from its file.
        "flink_secret_files": {
            f"security.ssl.{scope}.{key}": str(s.secret_file("flink_keystore"))
            for scope in ("rest", "internal")
            for key in ("keystore-password", "key-password", "truststore-password")
        },
    }


def write_job_config(s: Settings) -> Path:
    """``<run>/fastpath/job.json`` for this start (restoring the newest checkpoint, if any); mode 0600."""
    path = s.run_dir / NAME / "job.json"
    write_private(path, json.dumps(job_config(s, latest_checkpoint(s)), indent=2).encode())
    return path


def command(s: Settings, config: Path) -> list[str]:
    return flink.java_command(s, MAIN_CLASS, [str(config)], heap_mb=s.fastpath_heap_mb)


def run(s: Settings) -> int:
    """Run the fast path in the foreground until a stop signal; return the JVM's exit code.

    Holds the stream's lock (one job per checkpoint directory) for its whole life. SIGTERM, SIGINT
    or SIGHUP cancel the job (its last checkpoint is kept); a second signal kills it.
    """
    with streams.exclusive(s, [NAME]):
        config = write_job_config(s)
        restore = latest_checkpoint(s)
        print(
            f"fast path: {TOPIC} -> Redis (group {GROUP}); "
            + (f"restoring {restore}" if restore else f"no checkpoint: starting at the {s.fastpath_start} offsets"),
            flush=True,
        )
        started = time.monotonic()
        try:
            code = streams.run_process(s, command(s, config), NAME)
        finally:
            forget_metrics(s)
        print(f"fast path exited with code {code} after {time.monotonic() - started:.0f}s", flush=True)
        return code


def forget_metrics(s: Settings) -> None:
    """Delete the job's metrics from the pushgateway: a stopped job must not look alive with its last values.

    Flink's own ``deleteOnShutdown`` does not run when the JVM is stopped by a signal.
    """
    import requests

    with contextlib.suppress(requests.RequestException, OSError):  # no pushgateway (stack down): nothing to forget
        requests.delete(
            f"{s.pushgateway_url}/metrics/job/{PUSH_JOB}", timeout=5, auth=s.http_auth("pusher"), verify=str(s.ca_file)
        )


# -- agreement with gold ------------------------------------------------------------------
#: How far behind gold's newest payment the comparison stops: payments sent out of order within
#: this may not have reached both paths yet.
SETTLE = timedelta(minutes=5)
#: The comparison's default span, ending at the settled point.
SPAN = timedelta(hours=24)

Verdict = tuple[tuple[str, ...], float]


@dataclass(frozen=True)
class Agreement:
    """The fast path's verdicts against gold's, alert by alert, over ``[since, until)`` of event time."""

    since: datetime
    until: datetime
    both: int
    fast_only: list[str] = field(default_factory=list)
    gold_only: list[str] = field(default_factory=list)
    different: dict[str, tuple[Verdict, Verdict]] = field(default_factory=dict)  # event_id -> (fast, gold)

    @property
    def ok(self) -> bool:
        return not (self.fast_only or self.gold_only or self.different)

    def message(self, limit: int = 10) -> str:
        head = (
            f"{self.both} alerts with event time in [{self.since:%Y-%m-%d %H:%M:%S}, {self.until:%Y-%m-%d %H:%M:%S}) "
            "UTC agree"
        )
        if self.ok:
            return f"{head}; no difference"
        parts = [head]
        if self.gold_only:
            parts.append(f"{len(self.gold_only)} in gold only (missed by the fast path): {_ids(self.gold_only, limit)}")
        if self.fast_only:
            parts.append(f"{len(self.fast_only)} from the fast path only (not in gold): {_ids(self.fast_only, limit)}")
        if self.different:
            shown = ", ".join(
                f"{e} fast {list(f[0])} {f[1]} vs gold {list(g[0])} {g[1]}"
                for e, (f, g) in sorted(self.different.items())[:limit]
            )
            parts.append(f"{len(self.different)} with other rules or score: {shown}")
        return "; ".join(parts)


def _ids(ids: list[str], limit: int) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(sorted(ids)[:limit]) + more


def compare(
    fast: Mapping[str, tuple[datetime, Verdict]],
    gold: Mapping[str, tuple[datetime, Verdict]],
    since: datetime,
    until: datetime,
) -> Agreement:
    """Alert by alert over ``[since, until)`` (event time): which are on one side only, which differ."""

    def inside(side: Mapping[str, tuple[datetime, Verdict]]) -> dict[str, Verdict]:
        return {e: v for e, (t, v) in side.items() if since <= t < until}

    f, g = inside(fast), inside(gold)
    different = {e: (f[e], g[e]) for e in f.keys() & g.keys() if f[e] != g[e]}
    return Agreement(
        since=since,
        until=until,
        both=len(f.keys() & g.keys()) - len(different),
        fast_only=sorted(f.keys() - g.keys()),
        gold_only=sorted(g.keys() - f.keys()),
        different=different,
    )


def fast_verdicts(r: Any) -> dict[str, tuple[datetime, Verdict]]:
    """Every ``fraud:fast:{event_id}`` verdict in Redis: event_id -> (event time, (rules, score))."""
    from lakehouse.serving import keys

    prefix = keys.fraud_fast_alert_key("")
    names = [keys.to_text(k) for k in r.scan_iter(match=f"{prefix}*", count=1000)]
    out: dict[str, tuple[datetime, Verdict]] = {}
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    for name, raw in zip(names, pipe.execute(), strict=True):
        m = keys.decoded_map(raw or {})
        if {"event_time", "rules", "score"} <= m.keys():
            verdict = (tuple(json.loads(m["rules"])), float(m["score"]))
            out[name[len(prefix) :]] = (keys.decode_ts(m["event_time"]), verdict)
    return out


def gold_verdicts(s: Settings, since: datetime) -> tuple[dict[str, tuple[datetime, Verdict]], datetime | None]:
    """``gold.fraud_alerts`` from SINCE (through Trino), and the newest valid payment's event time in silver."""
    from lakehouse.services import trino

    catalog = s.trino_catalog
    rows = trino.query(
        s,
        f"SELECT event_id, event_time, rules, score FROM {catalog}.gold.fraud_alerts WHERE event_time >= ?",
        [since.replace(tzinfo=None)],
    )
    newest = trino.query(s, f"SELECT max(event_time) FROM {catalog}.silver.payments")[0][0]
    gold = {str(e): (_utc(t), (tuple(rules or ()), float(score))) for e, t, rules, score in rows}
    return gold, _utc(newest) if newest is not None else None


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def agreement(s: Settings, r: Any, span: timedelta = SPAN, settle: timedelta = SETTLE) -> Agreement | str:
    """The fast path against gold over the SPAN of event time before gold's newest payment minus
    SETTLE; or why they cannot be compared yet (a string). With both paths idle and caught up
    (a test), SETTLE may be 0: then gold's newest payment is included too."""
    from lakehouse.services import kafka

    lag = kafka.group_lag(s, GROUP, TOPIC)
    if lag["lag"] is None:
        return "the fast path has not committed a checkpoint yet: nothing to compare"
    horizon = datetime.now(UTC) - timedelta(days=7)  # fraud:fast:* live 7 days
    gold, newest = gold_verdicts(s, horizon)
    if newest is None:
        return "silver.payments is empty: gold has judged nothing yet"
    until = newest - settle + timedelta(microseconds=1)
    unread = kafka.first_unread_time(s, GROUP, TOPIC) if lag["lag"] else None
    if unread is not None:  # still reading: only what it has certainly judged (sent before its position)
        until = min(until, unread - max(settle, SETTLE))
    since = max(until - span, horizon)
    if until <= since:
        return f"the fast path is {lag['lag']} records behind gold's newest payments: compare once it has caught up"
    return compare(fast_verdicts(r), gold, since, until)
