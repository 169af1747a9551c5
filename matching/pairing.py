"""Pure pairing: no database, no I/O."""

from collections.abc import Callable, Sequence
from typing import TypeVar

R = TypeVar("R")
C = TypeVar("C")


def pairs(queue: Sequence[R], idle: Sequence[C]) -> list[tuple[R, C]]:
    """Pair the queue (earliest first) with the counselors (longest idle first).

    The head of the queue gets the counselor who has waited longest; the
    shorter list decides how many pairs there are.
    """
    return list(zip(queue, idle, strict=False))


def assign(
    idle: Sequence[C],
    waiting: Sequence[R],
    *,
    serves: Callable[[C, R], bool],
    arrival: Callable[[R], object],
) -> list[tuple[R, C]]:
    """Give each counselor (longest idle first) the earliest-arrived registration it serves.

    A registration goes to one counselor at most; a counselor that serves
    nobody waiting gets nothing, and the next one chooses.
    """
    ordered = sorted(waiting, key=arrival)
    taken: set[int] = set()
    made = []
    for counselor in idle:
        choice = next((r for r in ordered if id(r) not in taken and serves(counselor, r)), None)
        if choice is not None:
            taken.add(id(choice))
            made.append((choice, counselor))
    return made
