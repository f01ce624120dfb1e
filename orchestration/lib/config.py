"""Run configuration shared by every Spark-launching op: which settings a run uses."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from lakehouse.settings import Settings, SettingsError, check_run_master, check_run_overrides, load_settings


class SettingsRunConfig(dg.Config):
    """A run's settings: the platform's, with per-run overrides."""

    settings: dict[str, str] = Field(
        default_factory=dict,
        description="Overrides of lakehouse settings for this run, by field name "
        '(e.g. {"max_offsets_per_trigger": "500"}); only tuning and data-location settings may be overridden '
        "(lakehouse.settings.RUN_OVERRIDABLE): no secret, program, JVM option, endpoint or port.",
    )

    def resolve(self) -> Settings:
        """The effective settings; a bad or forbidden override fails the run with a message naming it."""
        try:
            check_run_overrides(self.settings)
            return load_settings(**self.settings)
        except SettingsError as e:
            raise dg.Failure(description=str(e)) from None


class SparkRunConfig(SettingsRunConfig):
    master: str | None = Field(
        None, description="Spark master for this run: local[N] or the configured one (LAKEHOUSE_SPARK_MASTER)."
    )

    def resolve(self) -> Settings:
        s = super().resolve()
        try:
            check_run_master(self.master, s)
        except SettingsError as e:
            raise dg.Failure(description=str(e)) from None
        return s
