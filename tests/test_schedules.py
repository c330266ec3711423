"""The schedules and the sensor as Dagster's daemon sees them: running as soon as the code loads,
and the runs each schedule's tick asks for (evaluated with Dagster's public schedule API)."""

from datetime import UTC, datetime

import pytest
from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    PartitionKeyRange,
    build_schedule_context,
    validate_run_config,
)

from cdp_assets.definitions import defs
from cdp_assets.maintenance import delta_maintenance
from partitions import daily_partitions


def _schedule(name: str):
    return next(s for s in defs.schedules if s.name == name)


def test_every_sensor_and_schedule_runs_by_default():
    assert {s.name: s.default_status for s in defs.schedules} == {
        "lake_daily_schedule": DefaultScheduleStatus.RUNNING,
        "delta_maintenance_schedule": DefaultScheduleStatus.RUNNING,
    }
    assert {s.name: s.default_status for s in defs.sensors} == {
        name: DefaultSensorStatus.RUNNING
        for name in (
            "raw_file_sensor",
            "alerts_on_success",
            "alerts_on_failure",
            "freshness_alerts",  # alerts and lineage sensors skip until configured (docs/insights.md)
            "openlineage_on_success",
            "openlineage_on_failure",
        )
    }


@pytest.mark.parametrize(
    "late_days, tick, first, last",
    [
        ("3", datetime(2026, 3, 10, 1, tzinfo=UTC), "2026-03-06", "2026-03-09"),
        ("0", datetime(2026, 3, 10, 1, tzinfo=UTC), "2026-03-09", "2026-03-09"),
        ("6", datetime(2026, 3, 1, 1, tzinfo=UTC), "2026-02-22", "2026-02-28"),
        ("5", datetime(2026, 1, 3, 1, tzinfo=UTC), "2026-01-01", "2026-01-02"),  # the first partition bounds it
    ],
)
def test_the_daily_tick_reopens_the_late_days(monkeypatch, late_days, tick, first, last):
    monkeypatch.setenv("CDP_LATE_DAYS", late_days)
    schedule = _schedule("lake_daily_schedule")
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone) == (
        "lake_daily",
        "0 1 * * *",
        "UTC",
    )
    (request,) = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=tick)).run_requests
    assert request.partition_key_range == PartitionKeyRange(first, last)
    days = daily_partitions.get_partition_keys_in_range(request.partition_key_range)
    assert len(days) == min(int(late_days) + 1, (tick.date() - daily_partitions.start.date()).days)
    assert request.run_key == f"{first}..{last}"  # one run per tick, also when the daemon retries it


def test_the_daily_tick_on_the_first_day_asks_for_nothing():
    schedule = _schedule("lake_daily_schedule")
    start = daily_partitions.start
    result = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=start.replace(hour=1)))
    assert result.run_requests == [] and "no complete day yet" in result.skip_message


def test_the_weekly_tick_asks_for_delta_maintenance_with_its_defaults():
    schedule = _schedule("delta_maintenance_schedule")
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone) == (
        "delta_maintenance",
        "0 3 * * 0",  # Sundays 03:00
        "UTC",
    )
    sunday = datetime(2026, 3, 8, 3, tzinfo=UTC)
    (request,) = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=sunday)).run_requests
    config = validate_run_config(delta_maintenance, request.run_config)
    assert config["ops"]["optimize_and_vacuum"]["config"] == {"retention_hours": 168.0, "tables": []}
