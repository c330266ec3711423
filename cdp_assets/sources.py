"""Managed sources in the asset graph: one asset, job and schedule per tenant's declared source.

`sources/{tenant}/{source}` runs the source's tap into the raw zone (`cdp_sources.runner`); the
raw-file sensor then starts the `lake_daily` runs for the days its files landed in. The asset's
metadata describes the run (records and bytes per stream, dead letters, the bookmark reached,
duration, the tap's exit code and the masked tail of its log); a failed, timed-out or paused run
fails the asset with the reason. Each source has its own job, so one tenant's failing tap never
holds up another's, and a schedule from its cron (UTC) that skips its ticks, with the reason, while
the source is paused.
"""

from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetsDefinition,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    SkipReason,
    asset,
    define_asset_job,
    schedule,
)

from cdp_resources.lake import LakeResource
from cdp_resources.warehouse import WarehouseResource
from cdp_sources.declarations import SecretReferenceError, Source, load_sources
from cdp_sources.runner import RunReport, SourceRunError, run_source, still_paused
from cdp_sources.state import SourceBusy, read_pause
from cdp_sources.taps import TapInstallError


@dataclass
class SourceDefinitions:
    assets: list[AssetsDefinition] = field(default_factory=list)
    jobs: list = field(default_factory=list)  # define_asset_job's (unresolved) jobs
    schedules: list[ScheduleDefinition] = field(default_factory=list)


def source_key(source: Source) -> AssetKey:
    return AssetKey(["sources", source.tenant, source.name])


def run_metadata(report: RunReport) -> dict:
    metadata = {
        "attempts": report.attempts,
        "duration_seconds": round(report.duration_seconds, 3),
        "tap_exit_code": report.exit_code if report.exit_code is not None else -1,
        "records_landed": sum(report.landed.values()),
        "files": report.files,
        "dead_letters": sum(report.dead_letters.values()),
        "dead_letters_by_rule": MetadataValue.json(dict(report.dead_letters)),
        "bookmark": MetadataValue.json(report.bookmark or {}),
        "tap_log_tail": MetadataValue.md("```\n" + "\n".join(report.stderr_tail) + "\n```"),
    }
    for stream in sorted(set(report.received) | set(report.landed)):
        metadata[f"records_received/{stream}"] = report.received[stream]
        metadata[f"records_landed/{stream}"] = report.landed[stream]
        metadata[f"bytes/{stream}"] = report.bytes[stream]
    return metadata


def source_asset(source: Source) -> AssetsDefinition:
    streams = ", ".join(f"{tap} → {mapping.to}" for tap, mapping in source.streams.items())

    @asset(
        key=source_key(source),
        group_name="sources",
        description=source.description or f"{source.tenant}'s {source.tap} into the raw zone: {streams}",
        owners=[source.owner] if source.owner else None,
        kinds={"singer"},
    )
    def _source(lake: LakeResource, warehouse: WarehouseResource) -> MaterializeResult:
        try:
            report = run_source(source, lake, warehouse.dsn())
        except SourceRunError as error:
            raise Failure(description=str(error), metadata=run_metadata(error.report)) from None
        except (TapInstallError, SecretReferenceError, SourceBusy) as error:
            raise Failure(description=f"source {source.key}: {error}") from None
        return MaterializeResult(metadata=run_metadata(report))

    return _source


def source_schedule(source: Source, job) -> ScheduleDefinition:
    """The source's cron schedule; while the source is paused, ticks are skipped with the reason."""

    @schedule(
        name=f"source__{source.tenant}__{source.name}_schedule",
        cron_schedule=source.schedule,
        job=job,
        execution_timezone="UTC",
        # Declaring a schedule in the sources file is the decision to run it.
        default_status=DefaultScheduleStatus.RUNNING,
    )
    def _schedule(warehouse: WarehouseResource):
        pause = read_pause(warehouse.dsn(), source.tenant, source.name)
        if pause and still_paused(source, pause):
            return SkipReason(f"source {source.key} is paused: {pause.reason}; change its config to resume")
        return RunRequest()

    return _schedule


def source_definitions(sources: list[Source] | None = None) -> SourceDefinitions:
    """The assets, jobs and schedules of `sources` (default: the sources file's)."""
    built = SourceDefinitions()
    for source in load_sources() if sources is None else sources:
        source_def = source_asset(source)
        job = define_asset_job(f"source__{source.tenant}__{source.name}", selection=[source_key(source)])
        built.assets.append(source_def)
        built.jobs.append(job)
        if source.schedule:
            built.schedules.append(source_schedule(source, job))
    return built
