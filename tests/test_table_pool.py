"""The curated step's table pool: tables run at once, each after its upstream, and a failure only
stops the tables that read the failed one."""

import threading

from cdp_assets.table_pool import UpstreamFailed, run_in_dependency_order


def test_independent_tables_run_at_once_and_dependants_wait():
    both_started = threading.Barrier(2, timeout=10)
    finished = []

    def table(name, meet=False):
        def work():
            if meet:
                both_started.wait()  # raises BrokenBarrierError unless the other one runs at the same time
            finished.append(name)
            return name.upper()

        return work

    work = {"a": table("a", meet=True), "b": table("b", meet=True), "c": table("c")}
    results = list(run_in_dependency_order(work, {"c": {"a", "b"}, "a": {"not_selected"}}, workers=2))
    assert [(name, result, error) for name, result, error in results if name == "c"] == [("c", "C", None)]
    assert finished[-1] == "c" and sorted(finished) == ["a", "b", "c"]
    assert all(error is None for _, _, error in results)


def test_a_failure_skips_its_dependants_only():
    def fails():
        raise ValueError("order_total_positive")

    work = {"fx": fails, "orders": lambda: "orders", "lines": lambda: "lines", "events": lambda: "events"}
    outcome = {
        name: (result, error)
        for name, result, error in run_in_dependency_order(work, {"orders": {"fx"}, "lines": {"orders"}}, workers=2)
    }
    assert set(outcome) == set(work)
    assert isinstance(outcome["fx"][1], ValueError)
    assert isinstance(outcome["orders"][1], UpstreamFailed) and "fx failed" in str(outcome["orders"][1])
    assert isinstance(outcome["lines"][1], UpstreamFailed) and "orders failed" in str(outcome["lines"][1])
    assert outcome["events"] == ("events", None)
