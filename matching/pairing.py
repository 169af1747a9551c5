"""Pure pairing: no database, no I/O."""

from collections.abc import Sequence
from typing import TypeVar

R = TypeVar("R")
C = TypeVar("C")


def pairs(queue: Sequence[R], idle: Sequence[C]) -> list[tuple[R, C]]:
    """Pair the queue (earliest first) with the counselors (longest idle first).

    The head of the queue gets the counselor who has waited longest; the
    shorter list decides how many pairs there are.
    """
    return list(zip(queue, idle, strict=False))
