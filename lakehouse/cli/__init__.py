"""The `lakehouse` command line. ``app`` assembles it from the sibling modules, one per command
group; they share ``_common`` and never import ``app``. Nothing outside this package imports it."""
