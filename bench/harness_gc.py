"""The load generator's own garbage collector, kept out of the latencies it measures.

The harness holds every client in one process (5,000 WebSocket connections are
about half a million objects); one of its full collections walks them all with
its event loop stopped, 220-360 ms measured at N = 5,000, and a change in flight
then looks that much slower whatever the server did. Each measured window
therefore runs with the harness's heap collected and frozen, and counts the
full collections the harness still made (they walk only what is not frozen).
Every design is measured the same way.
"""

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def harness_frozen() -> Iterator[dict]:
    """Collect and freeze the harness's heap for a measured window; yield its full collections meanwhile."""
    gc.collect()
    gc.freeze()
    seen = {"count": 0, "total_ms": 0.0}
    started: list[float] = []

    def watch(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[:] = [time.monotonic()]
        elif started:
            seen["count"] += 1
            seen["total_ms"] = round(seen["total_ms"] + (time.monotonic() - started[0]) * 1000, 1)

    gc.callbacks.append(watch)
    try:
        yield seen
    finally:
        gc.callbacks.remove(watch)
        gc.unfreeze()
