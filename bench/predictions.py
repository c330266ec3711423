"""Benchmark: churn and CLV fitted and scored for 100k and 1M profiles of one tenant, time per stage.

Each profile is a shopper of the generator's purchase behaviour (`cdp_sampledata/purchases.py`)
who joined in the year before the as-of day; their orders are written to Parquet and read by
Spark as the curated orders would be. Stages: `generate` (the timelines, not part of the
pipeline), `features` (Spark: one aggregation, collected to the driver), `fit_and_score` (BG/NBD,
Gamma-Gamma and the classifier fitted on the time split, measured, every buyer scored), `write`
(the scores to Delta). The goal: 1M profiles through features, fit, score and write in under
5 minutes on 2 cores, cost linear in profiles.

    .venv/bin/python bench/predictions.py                    # 100k and 1M profiles
    .venv/bin/python bench/predictions.py --sizes 20000      # quick
"""

import argparse
import random
import shutil
import time
from datetime import date, timedelta

import pandas as pd

from cdp_predictions.model import Settings
from cdp_predictions.pipeline import predict, score_frame
from cdp_resources.settings import state_dir
from cdp_resources.spark import get_spark_session
from cdp_sampledata.population import COUNTRIES, INDUSTRIES
from cdp_sampledata.purchases import PurchaseBehaviour, order_table, timeline

DAYS = 365
START = date(2025, 1, 1)


def inputs(profiles: int, root) -> tuple[str, pd.DataFrame]:
    """(Parquet path of the orders, the profiles' attributes)."""
    rng = random.Random(profiles)
    behaviour = PurchaseBehaviour()
    people = {f"p{i:08d}": rng.randrange(DAYS) for i in range(profiles)}
    lines = {person: timeline(7, "bench", person, day, DAYS, behaviour) for person, day in people.items()}
    path = str(root / f"orders_{profiles}.parquet")
    order_table("bench", lines, START).to_parquet(path, index=False)
    attributes = pd.DataFrame(
        {
            "tenant_id": "bench",
            "cdp_customer_id": list(people),
            "preferred_channel": [rng.choice(("shop", "app", "payments")) for _ in people],
            "country": [rng.choice(COUNTRIES)[0] for _ in people],
            "industry": [rng.choice(INDUSTRIES) if rng.random() < 0.35 else None for _ in people],
            "first_seen": [pd.Timestamp(START + timedelta(days=day)) for day in people.values()],
        }
    )
    return path, attributes


def run(spark, profiles: int, root) -> dict:
    seconds = {}
    started = time.perf_counter()
    path, attributes = inputs(profiles, root)
    seconds["generate"] = time.perf_counter() - started
    orders = spark.read.parquet(path)
    people = spark.createDataFrame(attributes)
    as_of = START + timedelta(days=DAYS - 1)
    (outcome,) = predict(orders, None, people, as_of, Settings(), seconds)
    started = time.perf_counter()
    frame = score_frame(spark, [outcome], as_of, "bench")
    if frame is not None:
        frame.write.format("delta").mode("overwrite").save(str(root / f"scores_{profiles}"))
    seconds["write"] = time.perf_counter() - started
    pipeline = seconds["features"] + seconds["fit_and_score"] + seconds["write"]  # wall-clock
    print(
        f"{profiles:>9,} profiles  buyers {len(outcome.scores) if outcome.scores is not None else 0:>9,}  "
        + "  ".join(f"{stage} {value:6.1f}s" for stage, value in seconds.items())
        + f"  pipeline {pipeline:6.1f}s  ({pipeline / profiles * 1e6:.0f} µs a profile)",
        flush=True,
    )
    if outcome.reason is None:
        churn = outcome.churn
        print(
            f"           AUC {churn['auc']:.3f}  Brier {churn['brier']:.3f}  ECE {churn['calibration_error']:.3f}  "
            f"top-decile lift {churn['top_decile_lift']:.2f}  purchases error {outcome.purchases['purchases_error']:.3f}  "
            f"gates failed: {outcome.failures or 'none'}",
            flush=True,
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    root = state_dir() / "bench" / "predictions"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    spark = get_spark_session(overrides={"spark.ui.enabled": "false"})
    for size in args.sizes:
        run(spark, size, root)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
