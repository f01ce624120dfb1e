"""What `lakehouse kafka` shows without a broker: masking of record values, and a checkpoint's offsets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from lakehouse.cli.app import main
from lakehouse.services.topics import Lag, checkpoint_lags, checkpoint_offsets, masked


def test_card_numbers_are_masked_in_json_and_in_anything_else() -> None:
    doc = {"event_id": "e1", "card_number": "4111111111111111", "amount": 12.5}
    shown = json.loads(masked(json.dumps(doc).encode()))
    assert shown == {"event_id": "e1", "card_number": "************1111", "amount": 12.5}
    assert masked(b"not json 4111 1111 1111 1111 here") == "not json ****1111 here"
    assert masked(b'{"card_number": "4111111111111111", "amount": ') == '{"card_number": "****1111", "amount": '
    assert masked(b"\xff\xfe caf\xc3\xa9") == "\\xff\\xfe café"  # not UTF-8: escaped, never a crash
    deep = b'{"card_number":"4111111111111111","tree":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert masked(deep).startswith('{"card_number":"****1111","tree":[[[')  # past Python's recursion limit
    assert masked(None) == "(null)"
    assert masked(b'"a string"') == '"a string"'


def _batch(checkpoint: Path, batch: int, offsets: dict[str, dict[str, int]], committed: bool) -> None:
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {}}
    (checkpoint / "offsets" / str(batch)).write_text("v1\n" + json.dumps(meta) + "\n" + json.dumps(offsets))
    if committed:
        (checkpoint / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')
        os.utime(checkpoint / "commits" / str(batch), (1_700_000_000, 1_700_000_000))


def test_a_checkpoint_says_where_its_last_committed_batch_ended(tmp_path: Path) -> None:
    cp = tmp_path / "bronze" / "payments"
    assert checkpoint_offsets(cp) is None  # never ran
    _batch(cp, 0, {"payments": {"0": 10, "1": 7}}, committed=True)
    _batch(cp, 1, {"payments": {"0": 25, "1": 9}}, committed=True)
    _batch(cp, 2, {"payments": {"0": 40, "1": 9}}, committed=False)  # planned, not done: not processed
    found = checkpoint_offsets(cp)
    assert found is not None
    offsets, when = found
    assert offsets == {"payments": {0: 25, 1: 9}}
    assert when.timestamp() == 1_700_000_000


def test_checkpoint_lag_is_end_minus_processed_per_partition(tmp_path: Path) -> None:
    from lakehouse.settings import Settings

    s = Settings(state_dir=tmp_path)
    _batch(s.checkpoint_dir / "bronze" / "iot", 3, {"iot": {"0": 5, "1": 8}}, committed=True)
    lags = checkpoint_lags(s, {"iot": {0: 9, 1: 8, 2: 4}})  # partition 2 never read: all of it is behind
    assert lags == [Lag("bronze/iot", "checkpoint", "iot", {0: 4, 1: 0, 2: 4}, lags[0].committed_at)]
    assert lags[0].total == 8


def test_the_kafka_commands_explain_themselves() -> None:
    result = CliRunner().invoke(main, ["kafka", "--help"])
    assert result.exit_code == 0
    for command in ("topics", "describe", "tail", "lag"):
        assert command in result.output
    lag_help = CliRunner().invoke(main, ["kafka", "lag", "--help"]).output
    assert "checkpoint" in lag_help
    assert "spark-kafka-lakehouse-<app>" in lag_help
