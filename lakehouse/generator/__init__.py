"""The seeded test and demo generator: events for the three contract topics, with ground truth.

- ``scenario``: :class:`GeneratorConfig` and :func:`generate` (pure: records plus their
  :class:`GroundTruth`), the truth's JSON form and :func:`merge_ground_truths`;
- ``produce``: :func:`produce`, sending a run to Kafka, the only I/O.

May import the model (``lakehouse.contracts``, ``lakehouse.fraud_reference``, ``lakehouse.settings``)
and kafka-python; nothing else of ``lakehouse``.
"""

from lakehouse.generator.produce import ProduceError, ProduceSummary, produce
from lakehouse.generator.scenario import (
    FRAUD_PATTERNS,
    INVALID_KINDS,
    RECORD_KINDS,
    TOPIC_NAMES,
    GeneratedRun,
    GeneratorConfig,
    GeneratorError,
    GroundTruth,
    Record,
    default_partition,
    expected_alerts,
    generate,
    load_ground_truth,
    merge_ground_truths,
    write_ground_truth,
)

__all__ = [
    "FRAUD_PATTERNS",
    "INVALID_KINDS",
    "RECORD_KINDS",
    "TOPIC_NAMES",
    "GeneratedRun",
    "GeneratorConfig",
    "GeneratorError",
    "GroundTruth",
    "ProduceError",
    "ProduceSummary",
    "Record",
    "default_partition",
    "expected_alerts",
    "generate",
    "load_ground_truth",
    "merge_ground_truths",
    "produce",
    "write_ground_truth",
]
