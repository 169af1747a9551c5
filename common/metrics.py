"""Prometheus metrics, named hearo_* (prometheus-client).

The queue gauges are set from the database at scrape time (``hearo.health``),
so every node reports the same truth; counters and histograms are per process.
"""

import gc
import time
from bisect import bisect_left
from itertools import accumulate

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily

waiting = Gauge("hearo_waiting_customers", "Customers WAITING in the queue")
longest_wait = Gauge("hearo_longest_wait_seconds", "How long the head of the queue has waited")
counselors = Gauge("hearo_counselors", "Counselors by status", ["status"])
matches = Counter("hearo_matches_total", "Matches made by matcher passes in this process")
fanout = Histogram(
    "hearo_fanout_seconds",
    "From a queue-change broadcast to the last changed rank pushed by this node",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
)
connections = Gauge("hearo_connections", "Open push connections on this node", ["tier"])
frames_refused = Counter("hearo_frames_refused_total", "Client frames refused (rate, size, malformed)", ["reason"])
redis_failovers = Counter(
    "hearo_redis_failovers_total", "Times this process's Redis connections followed a new primary (Sentinel)"
)
redis_recovery = Histogram(
    "hearo_redis_failover_recovery_seconds",
    "From this process first losing the Redis primary to its first connection to the promoted one",
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60),
)

# The freeze policy (realtime/gc_policy.py): what it froze and how often.
gc_frozen_objects = Gauge("hearo_gc_frozen_objects", "Objects in the frozen generation right after the last freeze")
gc_freezes = Counter("hearo_gc_freezes_total", "Times the long-lived heap was collected and frozen", ["reason"])
gc_unfreezes = Counter(
    "hearo_gc_unfreezes_total", "Times the frozen heap was unfrozen so dead cycles could be collected"
)


GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses:
    """How long Python's garbage collector stopped this process, by generation.

    A node holding thousands of sockets has millions of long-lived objects, and
    a full collection stops its event loop while it walks them. Timed from
    ``gc.callbacks`` into plain lists, without a lock: the callback runs inside
    whatever allocation set off the collection, possibly while that thread holds
    a prometheus-client lock, so it must not take one. Exposed as the histogram
    ``hearo_gc_pause_seconds{generation}`` at scrape time.
    """

    def __init__(self) -> None:
        self.started = 0.0
        self.counts = {generation: [0] * (len(GC_BUCKETS) + 1) for generation in range(3)}
        self.sums = dict.fromkeys(range(3), 0.0)

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        seconds = time.perf_counter() - self.started
        generation = info["generation"]
        self.counts[generation][bisect_left(GC_BUCKETS, seconds)] += 1
        self.sums[generation] += seconds

    def collect(self):
        family = HistogramMetricFamily(
            "hearo_gc_pause_seconds", "Garbage-collector pauses in this process", labels=["generation"]
        )
        for generation, counts in self.counts.items():
            cumulative = list(accumulate(counts))
            buckets = [(str(bound), n) for bound, n in zip(GC_BUCKETS, cumulative, strict=False)]
            family.add_metric([str(generation)], [*buckets, ("+Inf", cumulative[-1])], self.sums[generation])
        yield family


gc_pauses = GcPauses()
REGISTRY.register(gc_pauses)
gc.callbacks.append(gc_pauses)
