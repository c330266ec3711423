"""CPU time of a process, or of one of its threads, from Linux's /proc: the benchmarks' CPU figures."""

import os


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds process `pid` (or its thread `thread`) has used so far."""
    stat = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(stat) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
