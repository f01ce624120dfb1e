"""`python -m lakehouse.cli`: the same command as the `lakehouse` script."""

from lakehouse.cli.app import main

main()
