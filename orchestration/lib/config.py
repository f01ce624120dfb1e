"""Run configuration shared by every Spark-launching op: which settings a run uses."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from lakehouse.settings import Settings, SettingsError, load_settings


class SettingsRunConfig(dg.Config):
    """A run's settings: the platform's, with per-run overrides."""

    settings: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of lakehouse settings for this run, by field name "
        '(e.g. {"max_offsets_per_trigger": "500"}); see `lakehouse config`.',
    )

    def resolve(self) -> Settings:
        """The effective settings; a bad override fails the run with a message naming it."""
        try:
            return load_settings(**self.settings)
        except SettingsError as e:
            raise dg.Failure(description=str(e)) from None


class SparkRunConfig(SettingsRunConfig):
    master: str | None = Field(None, description="Spark master URL for this run (default: LAKEHOUSE_SPARK_MASTER).")
