"""The waiting room as the harness sees it: N STOMP clients in rank order.

The harness knows every rank in advance: it seeded the queue and it makes
every change itself, so after removing some customers the expected rank of
each remaining client is its new position. A ``Wave`` then records when the
last client whose rank changed first holds the right one.
"""

import asyncio
import time
from dataclasses import dataclass, field

from bench.clients import RankState, StompSocket, Wave, close_many, open_many
from bench.wsclient import HandshakeError

ATTEMPTS = 4


@dataclass
class Room:
    order: list[RankState]  # index + 1 == the rank each client should hold
    tokens: dict[int, str] = field(default_factory=dict)  # registration id -> bearer token
    gone: list[RankState] = field(default_factory=list)  # left the queue, still connected
    connect_s: float = 0.0
    retries: list[str] = field(default_factory=list)  # handshakes that failed and were retried

    def remove(self, indices: list[int]) -> Wave:
        """Take the clients at these positions out and arm a wave for everyone who moves up."""
        gone = set(indices)
        kept = [s for i, s in enumerate(self.order) if i not in gone]
        self.gone += [s for i, s in enumerate(self.order) if i in gone]
        first = min(indices)
        expected = {s: rank for rank, s in enumerate(kept, start=1) if rank - 1 >= first}
        self.order = kept
        return Wave(expected)

    def audit(self, truth: list[int]) -> dict:
        """Compare what every client holds now with the expected ranks and the database."""
        wrong = sum(1 for rank, s in enumerate(self.order, 1) if s.rank is not None and s.rank != rank)
        missing = sum(1 for s in self.order if s.rank is None)
        mismatch = sum(1 for s, reg in zip(self.order, truth, strict=False) if s.key != reg)
        return {
            "clients": len(self.order),
            "wrong": wrong,
            "missing": missing,
            "db_order_mismatch": mismatch + abs(len(truth) - len(self.order)),
            "stale_dropped": sum(s.stale for s in self.order),
        }

    def socks(self) -> list[StompSocket]:
        return [s.sock for s in self.order + self.gone]


async def room_open_hearo(ports: list[int], seats: list, offset: int = 0, concurrency: int = 100) -> tuple[Room, float]:
    """Connect and subscribe one client per seat, alternating nodes; return the room and seconds taken.

    ``offset`` is how many customers wait ahead of the first seat.
    """
    states = [RankState(seat.registration_id) for seat in seats]
    retries: list[str] = []

    def factory(i: int):
        seat, state, port = seats[i], states[i], ports[i % len(ports)]

        async def go():
            state.sock = await _open_with_retries(port, seat.token, state, retries)
            await state.sock.subscribe(f"/topic/queue-rank/{seat.customer_id}")

        return go

    started = time.monotonic()
    failures = [r for r in await open_many([factory(i) for i in range(len(seats))], concurrency) if r]
    if failures:
        # Leave nothing connected behind: the next scenario truncates the queue.
        await close_many([s.sock for s in states])
        raise failures[0]
    room = Room(states, tokens={seat.registration_id: seat.token for seat in seats}, retries=retries)
    await room_settle(room, timeout=120, offset=offset)
    return room, time.monotonic() - started


async def _open_with_retries(port: int, token: str, state: RankState, retries: list[str]) -> StompSocket:
    """Open one customer's STOMP session, retrying a refused handshake as a browser would."""
    for attempt in range(ATTEMPTS):
        try:
            return await StompSocket.open(
                f"ws://127.0.0.1:{port}/ws/stomp",
                {"Authorization": f"Bearer {token}"},
                state.on_message,
                origin=f"http://127.0.0.1:{port}",
            )
        except (OSError, TimeoutError, HandshakeError) as exc:
            if attempt == ATTEMPTS - 1:
                raise
            retries.append(type(exc).__name__)
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


async def room_settle(room: Room, timeout: float, offset: int = 0) -> int:
    """Wait until every client holds its expected rank; return how many still do not."""
    deadline = time.monotonic() + timeout
    while True:
        behind = sum(1 for rank, s in enumerate(room.order, offset + 1) if s.rank != rank)
        if not behind or time.monotonic() > deadline:
            return behind
        await asyncio.sleep(0.2)


async def room_close(room: Room) -> None:
    await close_many(room.socks())
