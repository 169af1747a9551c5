"""Baseline: the original 5 s REST polling of ``GET /api/queue/rank``.

Staleness is analytical: a rank changes at a uniformly random moment of a
client's 5 s polling period, so a client learns it 0-5 s late (mean 2.5 s,
p99 4.95 s), plus one request. The load is measured: N/5 requests per second
for N = 1,000, open loop, against one node.
"""

POLL_SECONDS = 5.0


def staleness() -> dict:
    return {"mean_ms": POLL_SECONDS / 2 * 1000, "p99_ms": POLL_SECONDS * 0.99 * 1000, "max_ms": POLL_SECONDS * 1000}


async def polling_at(ctx, cluster, seats: list, duration: float) -> dict:
    from bench.scenarios.heartbeat import loadgen

    n = len(seats)
    load = await loadgen(
        ctx, cluster.ports, seats, rate=n / POLL_SECONDS, duration=duration, method="GET", path="/api/queue/rank"
    )
    return {"n": n, "poll_seconds": POLL_SECONDS, "staleness": staleness(), "load": load}
