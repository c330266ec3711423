"""OpenLineage run events for asset materialisations, with the `openlineage-python` client.

Off unless configured the client's own way: `OPENLINEAGE_URL` (and optionally `OPENLINEAGE_ENDPOINT`,
`OPENLINEAGE_API_KEY`) or an `OPENLINEAGE_CONFIG` file. For each asset a finished Dagster run
materialised, one COMPLETE run event: the job is the asset (namespace `cdp`), its inputs are the
asset's upstream assets and its output the asset itself, as datasets named by asset key, so the
events spell the graph's lineage (raw stream → curated table → warehouse table → dbt models →
segment). The output carries dataset facets for its schema (the asset's column schema), its row
count, and the results of the asset checks the run evaluated on it (data-quality assertions).
"""

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)

NAMESPACE = "cdp"
PRODUCER = "https://github.com/cdp/cdp/tree/main/cdp_insights/lineage.py"


def configured() -> bool:
    return bool(os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_CONFIG"))


@dataclass
class Materialised:
    """What a run did to one asset: when, its rows and columns, and its checks' results."""

    asset: str
    upstream: list[str]
    finished: datetime
    row_count: int | None = None
    columns: list[tuple[str, str, str | None]] = field(default_factory=list)  # (name, type, description)
    checks: dict[str, bool] = field(default_factory=dict)


def _run_id(dagster_run_id: str, asset: str) -> str:
    # Stable per (run, asset): emitting a run's events again sends the same ids.
    return str(uuid.uuid5(uuid.UUID(dagster_run_id), asset))


def run_event(dagster_run_id: str, job: str, done: Materialised) -> RunEvent:
    facets = {}
    if done.columns:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t, description=d) for n, t, d in done.columns]
        )
    if done.checks:
        facets["dataQualityAssertions"] = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
            assertions=[
                data_quality_assertions_dataset.Assertion(assertion=name, success=passed)
                for name, passed in sorted(done.checks.items())
            ]
        )
    output_facets = {}
    if done.row_count is not None:
        output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=done.row_count
        )
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=done.finished.astimezone(UTC).isoformat(),
        run=Run(
            runId=_run_id(dagster_run_id, done.asset),
            facets={
                "parent": parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=dagster_run_id), job=parent_run.Job(namespace=NAMESPACE, name=job)
                )
            },
        ),
        job=Job(namespace=NAMESPACE, name=done.asset),
        producer=PRODUCER,
        inputs=[InputDataset(namespace=NAMESPACE, name=name) for name in done.upstream],
        outputs=[OutputDataset(namespace=NAMESPACE, name=done.asset, facets=facets, outputFacets=output_facets)],
    )


def emit(client: OpenLineageClient, dagster_run_id: str, job: str, materialised: Iterable[Materialised]) -> int:
    """Send one event per materialised asset; returns how many."""
    sent = 0
    for done in materialised:
        client.emit(run_event(dagster_run_id, job, done))
        sent += 1
    return sent


def columns_of(schema) -> list[tuple[str, str, str | None]]:
    """(name, type, description) of a Dagster `TableSchema`."""
    return [(c.name, c.type, c.description) for c in schema.columns] if schema is not None else []


def checks_by_asset(evaluations: Iterable[tuple[str, str, bool]]) -> Mapping[str, dict[str, bool]]:
    """(asset, check, passed) -> asset -> {check: passed}; a check evaluated twice keeps its last result."""
    found: dict[str, dict[str, bool]] = {}
    for asset, check, passed in evaluations:
        found.setdefault(asset, {})[check] = passed
    return found
