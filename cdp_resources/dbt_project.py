"""The dbt project (`dbt_project/`) as dagster-dbt's `DbtProject`, with its manifest prepared the way
dagster-dbt prepares one: under `dagster dev` (what `cdp dev` runs) when the code loads and the
manifest is stale (`prepare_if_dev`, with the `dbt` on PATH), and everywhere else beforehand: by `make setup`
(`dagster-dbt project prepare-and-package --file cdp_resources/dbt_project.py`), and by `cdp demo`
and the tests (`prepare`: only when the manifest is missing or older than a project file). Nothing
is parsed at import."""

import hashlib
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from cdp_resources.settings import PROJECT_DIR, state_dir

# dbt from this interpreter's environment, found without an activated virtualenv.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
_PROJECT_FILES = {".sql", ".yml", ".md"}
_NOT_PROJECT_FILES = {"target", "logs", "dbt_packages"}


def manifest_is_current(project: DbtProject) -> bool:
    """Whether `project`'s manifest exists and is newer than every model, test, macro and yml file."""
    manifest = project.manifest_path
    if not manifest.exists():
        return False
    files = (
        p
        for p in project.project_dir.rglob("*")
        if p.suffix in _PROJECT_FILES
        and p.is_file()
        and not _NOT_PROJECT_FILES & set(p.relative_to(project.project_dir).parts)
    )
    return all(p.stat().st_mtime <= manifest.stat().st_mtime for p in files)


def cdp_dbt_project(project_dir: Path = PROJECT_DIR / "dbt_project") -> DbtProject:
    """The dbt project at `project_dir`, its target (manifest, run results) under `.cdp/dbt/`, one per
    project copy; not prepared."""
    checkout = hashlib.sha1(str(project_dir.resolve()).encode()).hexdigest()[:8]
    return DbtProject(
        project_dir=project_dir,
        profiles_dir=project_dir,
        target_path=state_dir() / "dbt" / f"{project_dir.name}-{checkout}" / "target",
    )


def prepare(project: DbtProject) -> DbtProject:
    """`project` with its manifest prepared: `dbt parse` (this environment's dbt) when it is missing or
    stale, as dagster-dbt's preparer would, which runs the `dbt` on PATH whether needed or not."""
    if not manifest_is_current(project):
        dbt_cli(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project


def dbt_cli(project: DbtProject) -> DbtCliResource:
    return DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)


def docs_path(project: DbtProject) -> Path:
    """Where `dbt docs generate` writes the project's documentation site."""
    return project.target_path.parent / "docs"


dbt_project = cdp_dbt_project()
