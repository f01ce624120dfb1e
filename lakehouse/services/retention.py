"""Records Kafka deleted before bronze read them: found, said plainly, paged, and skipped only on request.

Kafka keeps a partition's records up to its retention (time or size); a bronze stream down or behind
for longer finds that the offsets its checkpoint would read next are gone. Spark's own answer
(``failOnDataLoss``) is a stack trace that names no range. Here, before bronze starts and when a
query fails, the checkpoint's position is compared with the oldest offset Kafka still holds:

- ``find_lost`` gives each partition's lost range ``[first, end)`` (what bronze had not read and Kafka
  no longer holds);
- ``DataLostError`` says what was lost and what to do; the driver exits with ``DATA_LOST`` and pushes
  ``lakehouse_kafka_records_lost{topic}`` (alert ``LakehouseKafkaRecordsLost``, a page);
- ``skip_lost`` (``lakehouse stream skip-lost``) is the recovery: it writes the lost ranges to a report
  under ``<lake>/_lost_offsets/``, runs bronze once past the gap (``failOnDataLoss=false`` for that run
  only), and clears the metric. Silver and gold continue from bronze, which holds everything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse.contracts import TOPICS
from lakehouse.services.kafka import log_offsets
from lakehouse.services.topics import checkpoint_positions
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from lakehouse.settings import LakePath

#: Exit code of a bronze driver that found records lost to retention (EX_DATAERR): a restart cannot help.
DATA_LOST = 65
#: The pushgateway group of the loss metric (kept until ``skip_lost`` clears it).
PUSH_JOB = "lakehouse_kafka_records_lost"
#: The stream whose checkpoints read Kafka.
BRONZE = "bronze"


@dataclass(frozen=True)
class LostRange:
    """Offsets ``[first, end)`` of one partition that bronze had not read and Kafka no longer holds."""

    topic: str
    partition: int
    first: int
    end: int

    @property
    def count(self) -> int:
        return self.end - self.first

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition} offsets {self.first}..{self.end - 1}"


def lost_ranges(topic: str, read_to: Mapping[int, int], earliest: Mapping[int, int]) -> list[LostRange]:
    """The ranges of TOPIC lost between where a checkpoint stopped reading (READ_TO: next offset per
    partition) and the oldest offset Kafka still holds (EARLIEST)."""
    return [
        LostRange(topic, p, read_to[p], earliest[p])
        for p in sorted(read_to)
        if p in earliest and earliest[p] > read_to[p]
    ]


def earliest_offsets(s: Settings, topics: Iterable[str]) -> dict[str, dict[int, int]]:
    """The oldest offset Kafka holds, per partition of TOPICS (the log start: retention moves it)."""
    return log_offsets(s, topics, earliest=True)


def find_lost(s: Settings, topics: Iterable[str] | None = None) -> list[LostRange]:
    """Every range bronze's checkpoints have not read and Kafka no longer holds (empty: nothing lost).
    A topic without a committed batch yet has lost nothing: a new checkpoint starts where it is told."""
    wanted = set(topics) if topics is not None else {t.name for t in TOPICS}
    positions = {t: p for t, p in checkpoint_positions(s, BRONZE).items() if t in wanted}
    if not positions:
        return []
    earliest = earliest_offsets(s, positions)
    return [r for topic, read_to in positions.items() for r in lost_ranges(topic, read_to, earliest.get(topic, {}))]


class DataLostError(RuntimeError):
    """Kafka deleted records bronze had not read: the message names them and the way out."""

    def __init__(self, lost: list[LostRange]) -> None:
        self.lost = lost
        total = sum(r.count for r in lost)
        per_topic: dict[str, int] = {}
        for r in lost:
            per_topic[r.topic] = per_topic.get(r.topic, 0) + r.count
        shown = ", ".join(str(r) for r in lost[:6]) + (f" and {len(lost) - 6} more" if len(lost) > 6 else "")
        super().__init__(
            f"Kafka no longer holds {total:,} records bronze had not read "
            f"({', '.join(f'{t}: {n:,}' for t, n in per_topic.items())}): its retention deleted them while "
            f"the stream was down or behind ({shown}). Bronze stops rather than skip them silently. "
            "What to do (docs/runbook.md, LakehouseKafkaRecordsLost): have the producers send those records "
            "again if they can; then `lakehouse stream skip-lost` records the lost ranges under "
            "<lake>/_lost_offsets/ and lets bronze go on from the oldest records Kafka still holds."
        )


def check(s: Settings, topics: Iterable[str] | None = None) -> None:
    """Raise DataLostError if bronze's next read would skip records Kafka deleted."""
    lost = find_lost(s, topics)
    if lost:
        raise DataLostError(lost)


def push_lost(s: Settings, lost: list[LostRange], log: Callable[[str], None] = print) -> None:
    """``lakehouse_kafka_records_lost{topic}``: what was lost, kept in the pushgateway until skip_lost."""
    import requests
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry()
    gauge = Gauge(
        "lakehouse_kafka_records_lost",
        "Records Kafka deleted (retention) before bronze read them; present until `lakehouse stream skip-lost`",
        ["topic"],
        registry=registry,
    )
    for r in lost:
        gauge.labels(r.topic).inc(r.count)
    try:
        resp = requests.put(
            f"{s.pushgateway_url}/metrics/job/{PUSH_JOB}",
            data=generate_latest(registry),
            timeout=5,
            auth=s.http_auth("pusher"),
            verify=str(s.ca_file),
        )
        resp.raise_for_status()
    except (requests.RequestException, OSError) as e:
        log(f"warning: the loss could not be pushed to {s.pushgateway_url} (no page will say it): {e}")


def pushed_lost(s: Settings) -> dict[str, float]:
    """``lakehouse_kafka_records_lost`` per topic as the pushgateway holds it now (empty: no loss pushed)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{s.pushgateway_url}/metrics", timeout=10, auth=s.http_auth(), verify=str(s.ca_file)).text
    return {
        sample.labels["topic"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "lakehouse_kafka_records_lost"
        for sample in family.samples
    }


def clear_lost(s: Settings, log: Callable[[str], None] = print) -> None:
    import requests

    try:
        requests.delete(
            f"{s.pushgateway_url}/metrics/job/{PUSH_JOB}",
            timeout=5,
            auth=s.http_auth("pusher"),
            verify=str(s.ca_file),
        ).raise_for_status()
    except (requests.RequestException, OSError) as e:
        log(f"warning: lakehouse_kafka_records_lost not cleared in {s.pushgateway_url}: {e}")


def skip(s: Settings, run_bronze: Callable[[Settings], int]) -> tuple[list[LostRange], LakePath | None]:
    """The recovery: record the lost ranges, run bronze past them (RUN_BRONZE: an available-now run of
    the settings it is given, returning its exit code), clear the page. Returns the ranges skipped
    and the report (none: nothing was lost). Raises DataLostError if the gap is still there after."""
    lost = find_lost(s)
    if not lost:
        clear_lost(s)
        return [], None
    report = write_report(s, lost)
    code = run_bronze(s.model_copy(update={"kafka_fail_on_data_loss": False}))
    if code != 0:
        raise RuntimeError(f"bronze failed past the gap (exit {code}); the lost ranges are recorded in {report}")
    left = find_lost(s)
    if left:  # retention moved on again while bronze ran
        raise DataLostError(left)
    clear_lost(s)
    return lost, report


def reports_dir(s: Settings) -> LakePath:
    return s.lake_dir / "_lost_offsets"


def write_report(s: Settings, lost: list[LostRange], now: datetime | None = None) -> LakePath:
    """The lost ranges as JSON under <lake>/_lost_offsets/ (one file per skip, never overwritten)."""
    now = now or datetime.now(UTC)
    path = reports_dir(s) / f"{now.strftime('%Y%m%dT%H%M%S%fZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "skipped_at": now.isoformat(),
        "records": sum(r.count for r in lost),
        "ranges": [{**asdict(r), "count": r.count} for r in lost],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def reports(s: Settings) -> list[dict[str, object]]:
    """Every loss report written so far, oldest first."""
    d = reports_dir(s)
    found: list[LakePath] = sorted(d.glob("*.json"), key=str) if d.is_dir() else []
    return [json.loads(p.read_text()) for p in found]
