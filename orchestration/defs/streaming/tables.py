"""Every bronze, silver and gold table of lakehouse/tables.py as a Dagster asset, with its lineage.

Declared from the table specs (description, owner, column schema, keys, partitioning,
Delta properties with their reasons), grouped by layer. These are the graph's nodes;
the streams that materialize them are wired in as runs of the Spark apps.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from lakehouse.contracts import TOPICS
from lakehouse.serving import SERVED_KEYS, key_layout_markdown
from lakehouse.tables import BRONZE, GOLD, QUARANTINE, SILVER, TableSpec

OWNER = "team:data-platform"


def table_key(spec: TableSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.layer, spec.name])


def _column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type.lower(),
                description=c.comment or None,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in spec.columns
        ]
    )


def _spec(spec: TableSpec, deps: list[dg.AssetKey], kinds: set[str]) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=table_key(spec),
        deps=deps,
        group_name=spec.layer,
        kinds=kinds,
        description=spec.description,
        owners=[OWNER],
        tags={"layer": spec.layer},
        metadata={
            **spec.metadata(),
            "dagster/column_schema": _column_schema(spec),
            "dagster/table_name": f"lakehouse.{spec.full_name}",
        },
    )


REDIS_KEY = dg.AssetKey(["serving", "redis"])


def _redis_spec() -> dg.AssetSpec:
    """The Redis projection of gold (a function: a module-level spec would be collected twice)."""
    return dg.AssetSpec(
        key=REDIS_KEY,
        deps=[table_key(GOLD[name]) for name in SERVED_KEYS],
        group_name="serving",
        kinds={"redis", "spark"},
        description=(
            "Gold in Redis for services (contracts §4): merchant minutes, each device's latest minute, the top pages "
            "per minute, the fraud alert stream and per-user fraud summaries. Written by spark_apps/serving.py from "
            "gold's change feed; a cache of the lake (`lakehouse redis rebuild` refills it). Materialized as the "
            "stream reports progress (at most once a minute), so its freshness is how far Redis trails gold."
        ),
        owners=[OWNER],
        tags={"layer": "serving"},
        metadata={
            "key_layout": dg.MetadataValue.md(key_layout_markdown()),
        },
        # Streams run continuously, catch-ups every 15 minutes: Redis older than that is behind.
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=1), warn_window=timedelta(minutes=20)
        ),
    )


LAYER_SPECS: dict[str, list[dg.AssetSpec]] = {
    "bronze": [_spec(BRONZE[t.name], [dg.AssetKey(["kafka", t.name])], {"delta", "spark"}) for t in TOPICS],
    # One stream writes silver and gold (spark_apps/refine.py); the lineage keeps the layers.
    "refine": [
        *[_spec(SILVER[t.name], [table_key(BRONZE[t.name])], {"delta", "spark"}) for t in TOPICS],
        _spec(QUARANTINE, [table_key(BRONZE[t.name]) for t in TOPICS], {"delta", "spark"}),
        *[
            _spec(GOLD[name], [table_key(SILVER[src]) for src in GOLD[name].inputs], {"delta", "spark"})
            for name in GOLD
        ],
    ],
    "serving": [_redis_spec()],
}

# The same specs, flat, as a tuple so the package loader does not collect them a second
# time: the stream multi-assets in streams.py own them.
table_specs = tuple(spec for specs in LAYER_SPECS.values() for spec in specs)
