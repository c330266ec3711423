"""Runs the tables of one multi-asset on a few threads of the run's process, in the order given (the
curated step gives them largest first), each once its upstream tables in the same step are done.
The threads share one Spark session, so one table's driver work (Python, planning, Delta commits,
on one core at most) overlaps another table's Spark tasks (figures: docs/performance.md)."""

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait


class UpstreamFailed(Exception):
    """A table was not run because a table it reads failed in the same step."""


def run_in_dependency_order(
    work: dict[str, Callable[[], object]], upstream: dict[str, set[str]], workers: int
) -> Iterator[tuple[str, object | None, BaseException | None]]:
    """Yields (name, result, error) for each name of `work` as it finishes, in the calling thread.
    `work` is started in its own order as upstream allows; `upstream[name]`: names (of `work`; others
    are ignored) that must succeed first, or `name` is not run and yields `UpstreamFailed`."""
    pending, running = dict(work), {}
    done, failed = set(), set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="table") as pool:
        while pending or running:
            for name in list(pending):
                needs = upstream.get(name, set()) & work.keys()
                if needs & failed:
                    del pending[name]
                    failed.add(name)
                    yield name, None, UpstreamFailed(f"not run: {', '.join(sorted(needs & failed))} failed")
                elif needs <= done:
                    running[pool.submit(pending.pop(name))] = name
            if not running:
                continue  # only skips happened; their dependants are settled on the next pass
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name, error = running.pop(future), future.exception()
                (failed if error else done).add(name)
                yield name, None if error else future.result(), error
