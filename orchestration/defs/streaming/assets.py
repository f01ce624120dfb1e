"""The Kafka topics of the contracts, as external assets upstream of everything else."""

from __future__ import annotations

import dagster as dg

from lakehouse.contracts import TOPICS, schema

topic_specs = [
    dg.AssetSpec(
        key=dg.AssetKey(["kafka", t.name]),
        group_name="kafka",
        kinds={"kafka"},
        description=f"Kafka topic `{t.name}` (key: `{t.key_field}`). {schema(t.name).get('title', '')}.",
        metadata={
            "topic": t.name,
            "key": t.key_field,
            "schema": dg.MetadataValue.json(schema(t.name)),
            "required_fields": ", ".join(schema(t.name).get("required", [])),
        },
        owners=["team:data-platform"],
    )
    for t in TOPICS
]
