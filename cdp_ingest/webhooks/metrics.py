"""Counters and a latency histogram, rendered in Prometheus' text exposition format (version 0.0.4).

Labels hold only known tenants and providers, and fixed reason names, never values taken from a
rejected request, so an attacker cannot grow the label set.
"""

from collections import Counter
from collections.abc import Iterable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(names: tuple[str, ...], values: tuple) -> str:
    def escape(value) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in zip(names, values, strict=True)) + "}"


class Metrics:
    """What the receiver counts; `render` adds the queue's own figures passed in as `extra`."""

    COUNTERS = {
        "received": (("tenant", "provider"), "Webhook requests for a known tenant and provider."),
        "accepted": (("tenant", "provider"), "Webhooks acknowledged with a record for the raw zone."),
        "dead_lettered": (("tenant", "provider", "rule"), "Authentic webhooks acknowledged as dead letters."),
        "duplicates": (("tenant", "provider"), "Webhooks recognised as retries of an event already queued."),
        "queued": (("tenant", "provider"), "Events made durable in the queue (new ones)."),
        "rejected": (("reason",), "Requests refused, by reason."),
    }

    def __init__(self):
        self.counts: dict[str, Counter] = {name: Counter() for name in self.COUNTERS}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def count(self, name: str, *labels: str) -> None:
        self.counts[name][labels] += 1

    def observe(self, seconds: float) -> None:
        self.latency_sum += seconds
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
                return
        self.buckets[-1] += 1

    def render(self, extra: Iterable[str] = ()) -> str:
        lines = []
        for name, (label_names, help_text) in self.COUNTERS.items():
            metric = f"cdp_webhooks_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines += [
                f"{metric}{_labels(label_names, labels)} {value}" for labels, value in sorted(self.counts[name].items())
            ]
        metric = "cdp_webhooks_request_seconds"
        lines += [f"# HELP {metric} Time from request to response, for webhook requests.", f"# TYPE {metric} histogram"]
        cumulative = 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.buckets, strict=True):
            cumulative += count
            lines.append(f'{metric}_bucket{{le="{bound}"}} {cumulative}')
        lines += [f"{metric}_sum {self.latency_sum}", f"{metric}_count {cumulative}", *extra]
        return "\n".join(lines) + "\n"
