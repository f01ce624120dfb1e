"""Fault scenarios against the real stack and the exact accounting they end with (``lakehouse chaos``)."""
