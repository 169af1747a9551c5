"""Scenario 2: match latency, from a counselor going AVAILABLE to both sides holding their message.

One customer waits (STOMP-subscribed to its rank topic) and one counselor
listens on its own topic (``Authorization: Token``). At t0 the counselor
posts AVAILABLE; the sample ends when the customer holds MATCHED and the
counselor MATCH_ASSIGNED. Between samples both sides confirm the join, the
counselor completes the call and goes OFFLINE, and a new customer joins.
A random pause before each t0 keeps beat-only samples from locking to the
beat's phase.
"""

import asyncio
import random
import time

from bench import seed
from bench.clients import StompSocket, http_call
from bench.stats import summary_ms

BOUND = 15.0


class Inbox:
    """Futures resolved when a STOMP message with a wanted status or type arrives."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future] = {}
        self.bodies: dict[str, dict] = {}

    def expect(self, what: str) -> asyncio.Future:
        self.waiting[what] = asyncio.get_running_loop().create_future()
        return self.waiting[what]

    def on_message(self, body: dict, now: float) -> None:
        what = body.get("type") or body.get("status")
        future = self.waiting.get(what)
        if future is not None and not future.done():
            self.bodies[what] = body
            future.set_result(now)


async def _stomp(port: int, auth: str, destination: str, inbox: Inbox) -> StompSocket:
    origin = f"http://127.0.0.1:{port}"
    sock = await StompSocket.open(f"ws://127.0.0.1:{port}/ws/stomp", {"Authorization": auth}, inbox.on_message, origin)
    await sock.subscribe(destination)
    return sock


async def _customer(port: int, i: int) -> tuple[StompSocket, Inbox, str]:
    _, body = await http_call(port, "POST", "/api/queue/join", body={"displayName": f"match bench {i}"})
    inbox = Inbox()
    first = inbox.expect("WAITING")
    sock = await _stomp(port, f"Bearer {body['token']}", f"/topic/queue-rank/{body['customerId']}", inbox)
    await asyncio.wait_for(first, BOUND)
    return sock, inbox, body["token"]


async def _sample(ports: list[int], counselor: Inbox, key: str, i: int, jitter: float) -> dict:
    sock, customer, token = await _customer(ports[i % 2], i)
    await asyncio.sleep(random.uniform(0, jitter))
    matched, assigned = customer.expect("MATCHED"), counselor.expect("MATCH_ASSIGNED")
    t0 = time.monotonic()
    status, _ = await http_call(ports[0], "POST", "/api/counselor/status", f"Token {key}", {"status": "AVAILABLE"})
    try:
        ends = await asyncio.wait_for(asyncio.gather(matched, assigned), BOUND)
        latency = max(ends) - t0
    except TimeoutError:
        latency = None
    await _finish(ports[0], key, token, counselor.bodies.get("MATCH_ASSIGNED"))
    await sock.close()
    return {"status": status, "latency": latency}


async def _finish(port: int, key: str, token: str, assigned: dict | None) -> None:
    """Join both sides, complete the call and take the counselor off shift."""
    if assigned:
        match = f"/api/matches/{assigned['matchId']}"
        await http_call(port, "POST", f"{match}/joined", f"Bearer {token}")
        await http_call(port, "POST", f"{match}/joined", f"Token {key}")
        await http_call(port, "POST", f"{match}/complete", f"Token {key}")
    await http_call(port, "POST", "/api/counselor/status", f"Token {key}", {"status": "OFFLINE"})
    await http_call(port, "POST", "/api/queue/cancel", f"Bearer {token}")  # if it was never matched


async def match_samples(cluster, samples: int, jitter: float) -> dict:
    await asyncio.to_thread(seed.queue_reset)
    counselor_id, key = await asyncio.to_thread(seed.counselor_seed, "bench-counselor")
    counselor = Inbox()
    sock = await _stomp(cluster.ports[1], f"Token {key}", f"/topic/counselor/{counselor_id}", counselor)
    try:
        rows = [await _sample(cluster.ports, counselor, key, i, jitter) for i in range(samples)]
    finally:
        await sock.close()
    done = [r["latency"] for r in rows if r["latency"] is not None]
    return {"samples": len(rows), "timeouts": len(rows) - len(done), "latency_ms": summary_ms(done), "raw": rows}
