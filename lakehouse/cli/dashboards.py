"""`lakehouse dashboards …`: where the stack's dashboards are, and the same dashboards as Grafana JSON."""

from __future__ import annotations

from pathlib import Path

import click

from lakehouse.cli._common import console, friendly_errors, load_settings


@click.group()
def dashboards() -> None:
    """The dashboards: served by the stack (`lakehouse ui --dashboard`), or exported for Grafana.

    \b
      lakehouse dashboards list                 every dashboard and panel, and where each reads
      lakehouse dashboards grafana --out DIR    one Grafana dashboard JSON per dashboard
    """


@dashboards.command("list")
@friendly_errors
def list_() -> None:
    """Every dashboard, its panels and each panel's source (Prometheus, Trino or Redis)."""
    from lakehouse.dashboards import DASHBOARDS

    s = load_settings()
    for d in DASHBOARDS:
        console.print(f"[bold]{d.title}[/]  {s.dashboard_url}/?dashboard={d.uid}", highlight=False)
        for p in d.panels:
            console.print(f"  {p.title}  [dim]({p.kind}, {p.source})[/]", highlight=False)


@dashboards.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("grafana-dashboards"),
    show_default=True,
    help="Directory for the JSON files.",
)
@friendly_errors
def grafana(out: Path) -> None:
    """Write the dashboards as Grafana JSON (Grafana 11.6's schema, built with grafana-foundation-sdk).

    \b
    Provision three datasources in Grafana under these UIDs:
      lakehouse-prometheus  Prometheus (the stack's, user admin)
      lakehouse-trino       Trino plugin (trino-datasource), user analyst
      lakehouse-redis       Redis plugin (redis-datasource), user reader
    """
    from lakehouse.services import grafana as g

    s = load_settings()
    for path in g.write_all(out, catalog=s.trino_catalog):
        console.print(f"wrote {path}", highlight=False)
