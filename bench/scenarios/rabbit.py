"""Baseline: the original design's scale-out answer, an external STOMP broker (RabbitMQ Web-STOMP).

Each of N clients subscribes to its own ``/topic/rank.<i>`` on
ws://127.0.0.1:15674/ws. A change is made locally (the same random cancels
and head-of-queue bursts as the HearO runs) and published as the original
server did: one SEND per waiting customer, in rank order, over one STOMP
connection. Latency runs from the first publish to the last client whose
rank changed holding its new rank. No database is involved, so this is a
lower bound for that design.
"""

import asyncio
import json
import random
import re
import subprocess
import time
from pathlib import Path

from bench.clients import RankState, StompSocket, close_many, open_many
from bench.room import Room, room_close, room_settle
from bench.scenarios.fanout import GAP_SECONDS, changes_summary

URL = "ws://127.0.0.1:15674/ws"
FD_MARGIN = 224  # the broker's own files, queues, the publisher
LOGIN = {"login": "guest", "passcode": "guest", "host": "/"}


def web_stomp_enable() -> str:
    """Enable rabbitmq_web_stomp (idempotent); return what rabbitmq-plugins said."""
    done = subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_web_stomp"], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmq-plugins failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "enabled"


def broker_fd_limit() -> int | None:
    """Return the soft open-files limit of the process listening on Web-STOMP's port."""
    out = subprocess.run(["ss", "-ltnpH", "sport = :15674"], capture_output=True, text=True).stdout
    match = re.search(r"pid=(\d+)", out)
    if not match:
        return None
    for line in Path(f"/proc/{match.group(1)}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


def broker_capacity(n: int) -> tuple[int, int | None]:
    """Return how many clients the broker can take without running out of descriptors.

    RabbitMQ crashes its memory monitor on EMFILE and then refuses new
    subscriptions until restarted, so stay well under its limit.
    """
    limit = broker_fd_limit()
    return (n if limit is None else min(n, limit - FD_MARGIN)), limit


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


async def rabbit_room(n: int) -> tuple[Room, float]:
    states = [RankState(i) for i in range(n)]

    def factory(state: RankState):
        async def go():
            state.sock = await StompSocket.open(URL, LOGIN, state.on_message)
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


async def rabbit_at(wanted: int, plan: dict) -> dict:
    n, fd_limit = broker_capacity(wanted)
    room, connect_s = await rabbit_room(n)
    pub = Publisher(await StompSocket.open(URL, LOGIN, lambda body, now: None))
    try:
        await asyncio.sleep(0.5)  # subscriptions are bound before the first publish
        await pub.publish_all(room)
        unsettled = await room_settle(room, 60)
        rng, changes, every = random.Random(n), [], plan.get("burst_every", 0)
        for i in range(plan["changes"]):
            is_burst = every and i % every == every - 1
            indices = list(range(plan["burst_size"])) if is_burst else [rng.randrange(len(room.order))]
            changes.append(await change(room, pub, indices, "burst" if is_burst else "cancel", plan["bound"]))
            await asyncio.sleep(GAP_SECONDS)
        await asyncio.sleep(1.0)
        audit = room.audit([s.key for s in room.order])
        summary = changes_summary(changes)
        capped = {"n_wanted": wanted, "broker_open_files_limit": fd_limit}
        return {"n": n, **capped, "connect_s": round(connect_s, 1), "unsettled": unsettled, "audit": audit, **summary}
    finally:
        await pub.sock.close()
        await room_close(room)
