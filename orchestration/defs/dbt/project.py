"""The dbt project (dbt_project/) and its manifest, which the code location needs to load.

``target/`` is git-ignored, so the manifest is built here, at load time, when it is missing
or older than any file of the project: `dbt parse` (offline, about 5 s) runs once, under a
file lock, whichever process (webserver, daemon, run worker, pytest) loads first. Editing a
model and reloading the code location is therefore enough to see the change in Dagster.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from dagster._utils import run_with_concurrent_update_guard
from dagster_dbt import DbtProject

from lakehouse.settings import PROJECT_ROOT, child_env

DBT_DIR = PROJECT_ROOT / "dbt_project"
#: The dbt of this interpreter's venv (the pinned dbt-core + dbt-trino); Dagster's processes
#: do not necessarily have the venv's bin/ on PATH.
_VENV_DBT = Path(sys.executable).parent / "dbt"
DBT_EXECUTABLE = str(_VENV_DBT) if _VENV_DBT.exists() else "dbt"
#: What the manifest is built from (dbt_project.yml's model/macro/test paths, and the profile).
_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")

project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


class DbtParseError(RuntimeError):
    pass


def _source_files(root: Path) -> Iterator[Path]:
    for name in _SOURCES:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())


def manifest_is_stale(p: DbtProject = project) -> bool:
    """True when the manifest is missing or older than a file it is built from."""
    if not p.manifest_path.exists():
        return True
    built = p.manifest_path.stat().st_mtime
    return any(f.stat().st_mtime > built for f in _source_files(p.project_dir))


def _parse(p: DbtProject) -> None:
    cmd = [
        DBT_EXECUTABLE,
        "parse",
        "--quiet",
        "--project-dir",
        str(p.project_dir),
        "--profiles-dir",
        str(p.profiles_dir),
        "--target-path",
        str(p.project_dir / p.target_path),
    ]
    proc = subprocess.run(
        cmd,
        cwd=p.project_dir,
        env=child_env(DO_NOT_TRACK="1", DBT_SEND_ANONYMOUS_USAGE_STATS="false"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0 or not p.manifest_path.exists():
        raise DbtParseError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def prepare_manifest(p: DbtProject = project) -> Path:
    """Build ``target/manifest.json`` if it is missing or stale; return its path."""
    if manifest_is_stale(p):
        # One parse for every process loading at once: the others wait, then find it fresh.
        p.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        run_with_concurrent_update_guard(p.manifest_path, _parse, guard_timeout_seconds=300, p=p)
    return p.manifest_path
