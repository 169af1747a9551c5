"""Pure ranking helpers: no database, no I/O."""

import math
from collections.abc import Sequence


def ranks_of(ordered_ids: Sequence[int]) -> dict[int, int]:
    """Return {registration id: 1-based rank} for ids in queue order."""
    return {reg_id: index for index, reg_id in enumerate(ordered_ids, start=1)}


def estimate_wait_seconds(*, rank: int, counselors_on_shift: int, average_call_seconds: float | None) -> int | None:
    """Return the expected wait for a rank, or None when there is too little data.

    Customers are served in rounds of ``counselors_on_shift``; the customer at
    ``rank`` is in round ceil(rank / counselors) and each round lasts about
    one average call. With no counselor on shift or no recent calls there is
    no honest estimate, so the client shows "estimating…".
    """
    if counselors_on_shift <= 0 or average_call_seconds is None:
        return None
    rounds = math.ceil(rank / counselors_on_shift)
    return round(rounds * average_call_seconds)
