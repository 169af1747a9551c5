"""Order statistics for latency samples (seconds in, milliseconds out)."""

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Return the nearest-rank percentile of the values (None if there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict:
    """Return n, p50, p99, max and mean of latencies in seconds, as milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "n": len(seconds),
        "p50": ms(percentile(seconds, 50)),
        "p99": ms(percentile(seconds, 99)),
        "max": ms(max(seconds) if seconds else None),
        "mean": ms(sum(seconds) / len(seconds) if seconds else None),
    }


def ratio(slow: float | None, fast: float | None) -> float | None:
    """Return slow / fast, rounded (None when either is missing or fast is zero)."""
    if slow is None or not fast:
        return None
    return round(slow / fast, 1)
