"""Dagster definitions by domain; each subpackage holds assets/checks/schedules/sensors/resources."""
