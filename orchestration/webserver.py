"""The Dagster UI and GraphQL on HTTPS behind the platform's login: what `lakehouse up` runs instead of
`dagster-webserver` (which has no authentication and accepts cross-site mutations).

It builds the same app the `dagster-webserver` command builds (``create_app_from_workspace_process_context``
with the command's defaults), wraps it in ``lakehouse.services.dagster_guard.Guard`` and serves it with
uvicorn on TLS only. There is no other listener.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lakehouse.services.dagster_guard import serve_guarded
from lakehouse.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger("lakehouse.dagster_web")


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    with contextlib.suppress(asyncio.CancelledError):  # uvicorn cancels it on SIGTERM
        yield


def serve(s: Settings, workspace: Path) -> None:
    """Serve the Dagster UI and GraphQL for WORKSPACE on ``s.dagster_port``, HTTPS only, behind the Guard."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_webserver.app import create_app_from_workspace_process_context
    from dagster_webserver.version import __version__

    instance = DagsterInstance.get()
    # What `dagster-webserver` does with its defaults (statement timeout 15 s, pool recycle 1 h, overflow 20).
    instance.optimize_for_webserver(15000, 3600, 20)
    with WorkspaceProcessContext(
        instance,
        version=__version__,
        read_only=False,
        workspace_load_target=WorkspaceFileTarget(paths=[str(workspace)]),
    ) as context:
        app = create_app_from_workspace_process_context(context, "", None, lifespan=_lifespan)
        log.info("serving the Dagster UI on %s (HTTPS, login required) in process %d", s.dagster_url, os.getpid())
        serve_guarded(app, s, s.dagster_port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestration.webserver", description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, default=PROJECT_ROOT / "workspace.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    serve(get_settings(), args.workspace)


if __name__ == "__main__":
    main()
