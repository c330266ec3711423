"""Benchmark: the anomaly detector on generated months, over several seeds: how many injected
drop-days it finds (and explains by the right country), and how many false findings the clean
days raise per 30 days. The metrics are counted from the generator's records
(`cdp_sampledata/daily_counts.py`); one tenant, 14 days of history, then 32 judged days with a
two-day drop of one country's app use (or orders, `--activity orders`).

    .venv/bin/python bench/insights_detector.py                     # seeds 1-10
    .venv/bin/python bench/insights_detector.py --seeds 3 --customers 4000 --activity orders
"""

import argparse
import time
from datetime import date, timedelta

from cdp_insights.anomalies import MIN_HISTORY_DAYS, detect
from cdp_sampledata.anomalies import CountryDrop
from cdp_sampledata.daily_counts import ADDITIVE, COUNTS, daily_metrics

START = date(2026, 3, 2)
JUDGED_DAYS = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--customers", type=int, default=1_500)
    parser.add_argument("--country", default="US")
    parser.add_argument("--kept", type=float, default=0.1)
    parser.add_argument("--activity", choices=("app", "orders"), default="app")
    args = parser.parse_args()
    days = MIN_HISTORY_DAYS + JUDGED_DAYS
    judged = [START + timedelta(days=MIN_HISTORY_DAYS + n) for n in range(JUDGED_DAYS)]
    drop = CountryDrop("acme_corp", args.country, days - 6, 2, args.kept, args.activity)
    truth = drop.truth(START)
    expected = {(metric, day) for metric in truth["metrics"] for day in truth["days"]}
    found_total = false_total = 0
    for seed in range(1, args.seeds + 1):
        started = time.perf_counter()
        findings = detect(
            daily_metrics(seed, "acme_corp", args.customers, days, START, (drop,)), judged, ADDITIVE, COUNTS
        )
        hits = {
            (f.metric, f.day.isoformat())
            for f in findings
            if (f.metric, f.day.isoformat()) in expected and f.contributors[0].member == args.country
        }
        false = [f for f in findings if f.day.isoformat() not in truth["days"]]
        found_total, false_total = found_total + len(hits), false_total + len(false)
        print(
            f"seed {seed:>2}: found {len(hits)}/{len(expected)} drop findings explained by {args.country}, "
            f"{len(false)} false in 30 clean days ({time.perf_counter() - started:.1f}s)"
        )
    print(
        f"total: {found_total}/{len(expected) * args.seeds} found, "
        f"{false_total / args.seeds:.2f} false findings per 30 clean days"
    )


if __name__ == "__main__":
    main()
