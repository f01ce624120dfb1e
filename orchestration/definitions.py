"""The code location: every definition found under ``orchestration/defs/``; nothing listed by hand."""

from __future__ import annotations

import warnings

import dagster as dg

from orchestration import defs as _defs_package
from orchestration.lib.metrics import prometheus_resource
from orchestration.lib.spark import SparkPipes

with warnings.catch_warnings():
    # The package loader is marked "preview" in Dagster 1.13; it is the documented way to
    # collect a defs/ folder without a hand-kept list, and the layout test pins its result.
    warnings.simplefilter("ignore", category=dg.PreviewWarning)
    # dagster-prometheus's resource is marked "beta"; it is the integration the platform uses.
    warnings.simplefilter("ignore", category=dg.BetaWarning)
    defs = dg.load_definitions_from_package_module(
        _defs_package, resources={"prometheus": prometheus_resource(), "spark": SparkPipes()}
    )
