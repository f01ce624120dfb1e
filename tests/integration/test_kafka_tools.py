"""`lakehouse kafka …` against the stack's broker, and the consumer groups the Spark drivers commit to."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lakehouse.cli.app import main
from lakehouse.contracts import TOPICS
from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.services import kafka, topics
from lakehouse.settings import Settings


def _json(args: list[str]) -> object:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_topics_and_describe_show_partitions_offsets_bytes_and_retention(lakehouse_stack: Settings) -> None:
    listed = _json(["kafka", "topics", "--json"])
    assert isinstance(listed, list)
    by_name = {t["name"]: t for t in listed}
    for contract in TOPICS:
        t = by_name[contract.name]
        assert len(t["partitions"]) == lakehouse_stack.kafka_partitions
        assert t["retention_bytes"] == 1024**3  # the contract topics' 1 GiB per partition
        assert t["records"] == sum(p["end"] - p["start"] for p in t["partitions"])
        assert t["size_bytes"] >= 0
    described = _json(["kafka", "describe", "payments", "--json"])
    assert isinstance(described, dict)
    assert [p["partition"] for p in described["partitions"]] == list(range(len(by_name["payments"]["partitions"])))
    assert described["configs"]["cleanup.policy"] == "delete"
    missing = CliRunner().invoke(main, ["kafka", "describe", "no-such-topic"])
    assert missing.exit_code == 1
    assert "no topic 'no-such-topic'" in missing.output
    assert "payments" in missing.output  # and it lists what exists


def test_tail_shows_the_newest_records_with_card_numbers_masked(lakehouse_stack: Settings) -> None:
    run = generate(GeneratorConfig(seed=5, count=40, rate=50, topics=("payments",)))
    assert produce(run, lakehouse_stack).failed == 0
    result = CliRunner().invoke(main, ["kafka", "tail", "payments", "-n", "5", "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 5
    sent = {}
    for r in run.records:
        try:
            doc = json.loads(r.value)
        except ValueError:
            continue
        if r.topic == "payments" and isinstance(doc, dict) and "event_id" in doc:
            sent[doc["event_id"]] = doc
    newest = [json.loads(r["value"]) for r in records]
    assert all(v["event_id"] in sent for v in newest), "tail should show the records just produced"
    for v in newest:
        card = sent[v["event_id"]]["card_number"]
        assert v["card_number"] != card
        assert v["card_number"].endswith(str(card)[-4:])
        assert set(v["card_number"][:-4]) == {"*"}
    assert all(str(doc.get("card_number")) not in result.output for doc in sent.values() if doc.get("card_number"))


def test_the_pipeline_commits_its_kafka_progress_to_a_consumer_group(stack_lake: Settings) -> None:
    """After the pipeline ran, its group's committed offsets are exactly where its checkpoint says it is."""
    s = stack_lake
    ends = kafka.end_offsets(s, [t.name for t in TOPICS])
    from_checkpoint = {
        lag.topic: lag.behind for lag in topics.checkpoint_lags(s, ends) if lag.who.startswith("bronze/")
    }
    from_group = {
        lag.topic: lag.behind for lag in topics.group_lags(s, ends) if lag.who == topics.spark_group("pipeline")
    }
    assert set(from_checkpoint) == {t.name for t in TOPICS}
    assert from_group == from_checkpoint
    result = CliRunner().invoke(main, ["kafka", "lag"])
    assert result.exit_code == 0, result.output
    assert "spark-kafka-lakehouse-pipeline" in result.output
    assert "bronze/payments" in result.output
