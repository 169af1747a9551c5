"""Prometheus metrics, named hearo_* (prometheus-client).

Gauges of the queue are read from the database at scrape time, so every node
reports the same truth; counters and histograms are per process.
"""

from prometheus_client import Counter, Gauge, Histogram

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


def refresh_queue_gauges() -> None:
    """Read the queue's gauges from the database (called on scrape)."""
    import time

    from django.apps import apps

    from queues.selectors import queue_order

    snapshot = queue_order()
    waiting.set(len(snapshot.ids))
    head = snapshot.head_enqueued_at
    longest_wait.set(time.time() - head.timestamp() if head else 0)
    counselor = apps.get_model("matching", "Counselor")
    by_status = dict.fromkeys(counselor.Status.values, 0)
    for status in counselor.objects.values_list("status", flat=True):
        by_status[status] += 1
    for status, count in by_status.items():
        counselors.labels(status=status).set(count)
