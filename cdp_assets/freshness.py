"""Freshness target of the marts and segments: the previous day's data by 08:00 UTC.

The daily schedule builds yesterday at 01:00 UTC, so a mart or segment is fresh when it has been
materialised between 00:00 and 08:00 UTC each day: Dagster's cron `FreshnessPolicy`, evaluated by
the daemon's freshness loop (`freshness: enabled` in dagster.yaml), which records each change of
state in the event log; the `freshness_alerts` sensor (`sensors/run_events.py`) turns a change to
FAIL into the alerts file's `freshness` rule. Dagster 1.13 evaluates the policy per asset, not per
partition (a backfill of an old day in that window also counts as fresh), which the daily runs of
the latest days make a fair reading of "yesterday by 08:00".
"""

from datetime import timedelta

from dagster import FreshnessPolicy

DEADLINE_CRON = "0 8 * * *"
FRESHNESS_LAYERS = ("marts", "segments")
MARTS_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron=DEADLINE_CRON, lower_bound_delta=timedelta(hours=8), timezone="UTC"
)
