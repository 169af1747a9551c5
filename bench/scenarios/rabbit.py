"""Baseline: the original design's scale-out answer, an external STOMP broker (RabbitMQ Web-STOMP).

Each of N clients subscribes to its own ``/topic/rank.<i>`` on the bench's
private RabbitMQ node (``bench.rabbitmq``). A change is made locally (the
same random cancels and head-of-queue bursts as the HearO runs) and
published as the original server did: one SEND per waiting customer, in
rank order, over one STOMP connection. Latency runs from the first publish
to the last client whose rank changed holding its new rank. No database is
involved, so this is a lower bound for that design.
"""

import asyncio
import json
import random
import time

from bench.clients import RankState, StompSocket, close_many, open_many
from bench.harness_gc import harness_frozen
from bench.rabbitmq import Broker
from bench.room import Room, room_close, room_settle
from bench.scenarios.fanout import GAP_SECONDS, changes_summary

FD_MARGIN = 224  # the broker's own files, queues, the publisher
LOGIN = {"login": "guest", "passcode": "guest", "host": "/"}


def broker_capacity(broker: Broker, n: int) -> int:
    """Return how many clients the broker can take without running out of descriptors.

    RabbitMQ crashes its memory monitor on EMFILE and then refuses new
    subscriptions until restarted, so stay well under its limit (the
    private node's limit fits 5,000; this guards a machine whose hard limit does not).
    """
    return min(n, broker.open_files_limit - FD_MARGIN)


class Publisher:
    def __init__(self, sock: StompSocket) -> None:
        self.sock = sock
        self.version = 0

    async def publish_all(self, room: Room) -> float:
        """Send every waiting client its rank; return the monotonic time of the first send."""
        self.version += 1
        t0 = time.monotonic()
        for rank, state in enumerate(room.order, start=1):
            body = json.dumps({"status": "WAITING", "rank": rank, "version": self.version})
            await self.sock.send(f"/topic/rank.{state.key}", body)
        return t0


async def rabbit_room(url: str, n: int) -> tuple[Room, float]:
    states = [RankState(i) for i in range(n)]

    def factory(state: RankState):
        async def go():
            state.sock = await StompSocket.open(url, LOGIN, state.on_message)
            await state.sock.subscribe(f"/topic/rank.{state.key}")

        return go

    started = time.monotonic()
    failures = [r for r in await open_many([factory(s) for s in states]) if r]
    if failures:
        await close_many([s.sock for s in states])
        raise failures[0]
    return Room(states), time.monotonic() - started


async def change(room: Room, pub: Publisher, indices: list[int], kind: str, bound: float) -> dict:
    wave = room.remove(indices)
    t0 = await pub.publish_all(room)
    publish_s = time.monotonic() - t0
    return {"kind": kind, "status": 200, "request_s": publish_s, **await wave.wait(t0, bound)}


async def rabbit_at(broker: Broker, wanted: int, plan: dict) -> dict:
    """Connect N subscribers to the private broker, then make and time the plan's changes."""
    n = broker_capacity(broker, wanted)
    room, connect_s = await rabbit_room(broker.url, n)
    pub = Publisher(await StompSocket.open(broker.url, LOGIN, lambda body, now: None))
    try:
        await asyncio.sleep(0.5)  # subscriptions are bound before the first publish
        await pub.publish_all(room)
        unsettled = await room_settle(room, 60)
        rng, changes, every = random.Random(n), [], plan.get("burst_every", 0)
        with harness_frozen() as harness_gc:
            for i in range(plan["changes"]):
                is_burst = every and i % every == every - 1
                indices = list(range(plan["burst_size"])) if is_burst else [rng.randrange(len(room.order))]
                changes.append(await change(room, pub, indices, "burst" if is_burst else "cancel", plan["bound"]))
                await asyncio.sleep(GAP_SECONDS)
        await asyncio.sleep(1.0)
        audit = room.audit([s.key for s in room.order])
        summary = changes_summary(changes)
        capped = {"n_wanted": wanted, "broker_open_files_limit": broker.open_files_limit, "broker": broker.node}
        result = {"n": n, **capped, "connect_s": round(connect_s, 1), "unsettled": unsettled, "audit": audit}
        return {**result, **summary, "harness_full_collections": harness_gc}
    finally:
        await pub.sock.close()
        await room_close(room)
