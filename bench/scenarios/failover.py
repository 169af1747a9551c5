"""Scenario 5: a Redis Sentinel failover under N connected customers (issue #16).

A primary, a replica and three sentinels of the phase's own (bench/redis_ha.py);
both Daphne nodes find the primary through the sentinels only. N seeded
customers hold STOMP sockets, alternating nodes. Each round SIGKILLs the
primary and, right after, a few customers cancel through the REST API, as
the page would: a 503 is retried after its ``Retry-After``. Their changes
reach the database while Redis has no primary, so the other clients can hold
their new ranks only once the nodes follow the promoted replica and re-sync.

Measured per round, all from the kill: when every sentinel names the promoted
replica (Sentinel's detection and failover), and when every remaining client
holds its true rank again (the last moved client's first correct rank; the
unmoved ones are checked too). Then the killed server is started again and
the round waits until it is a replica in sync before the next kill. Each
node's ``hearo_redis_failovers_total`` and
``hearo_redis_failover_recovery_seconds`` are read from /metrics around
every round.
"""

import asyncio
import random
import time

from bench import seed
from bench.clients import HttpConn
from bench.room import Room, room_settle
from bench.scenarios import fanout
from bench.scenarios.fanout import hearo_room
from bench.stats import summary_ms

# Sentinel timing of the phase's topology (bench/redis_ha.py's defaults, recorded with the results).
DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS = 1000, 5000
BOUND_SECONDS = 60  # a round that has not settled by then counts its clients as missing
RETRY_AFTER_DEFAULT = 2.0
FAILOVERS, RECOVERY = "hearo_redis_failovers_total", "hearo_redis_failover_recovery_seconds"
METRICS = (FAILOVERS, f"{RECOVERY}_sum", f"{RECOVERY}_count")


def node_env(base: dict, ha) -> dict:
    """Return the nodes' environment: every Redis client (Celery's broker too) through the sentinels."""
    broker = ";".join(f"sentinel://127.0.0.1:{port}" for port in ha.sentinel_ports)
    return {**base, **ha.env(), "CELERY_BROKER_URL": broker}


async def failover_measure(ha, nodes, n: int, kills: int, cancels: int) -> dict:
    """Seed and connect n customers, fail the primary over ``kills`` times; return every round and a summary."""
    async with hearo_room(nodes, n) as (room, _, __):
        rounds = []
        for i in range(kills):
            rounds.append(await failover_round(ha, nodes.ports, room, cancels, random.Random(i)))
            rounds[-1]["restart_s"] = await primary_restart(ha, rounds[-1]["old_primary"])
            rounds[-1]["ready_after_restart"] = await nodes_ready(nodes.ports)
            await room_settle(room, timeout=BOUND_SECONDS)  # the next kill starts from a settled room
        audit = room.audit(await asyncio.to_thread(seed.queue_truth))
        return {
            "n": n,
            "connect_s": round(room.connect_s, 1),
            "cancels_per_kill": cancels,
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "bound_s": BOUND_SECONDS,
            "rounds": rounds,
            "audit": audit,
            **rounds_summary(rounds),
        }


async def failover_round(ha, ports: list[int], room: Room, cancels: int, rng: random.Random) -> dict:
    """Kill the primary, cancel a few customers meanwhile, time promotion and the clients' return to truth."""
    leaving = sorted(rng.sample(range(len(room.order)), cancels))
    tokens = [room.tokens[room.order[i].key] for i in leaving]
    wave = room.remove(leaving)  # armed before the kill: a push may land while the cancels are still retried
    metrics_before = await metrics_scrape(ports)
    old = await asyncio.to_thread(ha.kill_primary)
    killed_at, killed_wall = time.monotonic(), time.time()
    promoting = asyncio.create_task(promoted_after(ha, old, killed_at))
    answers = await asyncio.gather(*(cancel_retried(ports[i % len(ports)], t) for i, t in enumerate(tokens)))
    moved = await wave.wait(killed_at, BOUND_SECONDS)
    settled_s = await all_settled(room, killed_at, moved)
    new, promoted_s = await promoting
    metrics_after = await metrics_scrape(ports)
    truth = await asyncio.to_thread(seed.queue_truth)
    return {
        "old_primary": old,
        "new_primary": new,
        "promoted_s": promoted_s,
        "sentinel_log_s": sentinel_marks(ha, old, killed_wall),
        "settled_s": settled_s,
        "after_promotion_s": None if settled_s is None else round(settled_s - promoted_s, 3),
        "first_push_s": round(min(wave.hits) - killed_at, 3) if wave.hits else None,
        "moved": moved,
        "cancels": answers,
        "dropped_sockets": sum(1 for s in room.order if s.sock.ws.close_code is not None),
        "audit": room.audit(truth),  # the harness's order against the database's, and what each client holds
        "nodes": metrics_delta(metrics_before, metrics_after),
    }


async def promoted_after(ha, old: int, killed_at: float) -> tuple[int, float]:
    """Return the promoted primary and the seconds from the kill until every sentinel names it."""
    new = await asyncio.to_thread(ha.wait_promoted, old, BOUND_SECONDS)
    return new, round(time.monotonic() - killed_at, 3)


async def all_settled(room: Room, killed_at: float, moved: dict) -> float | None:
    """Return seconds from the kill until every remaining client held its true rank (None: not within the bound).

    The wave times the moved clients; the unmoved ones must still hold their
    rank too (a re-sync could have pushed them something else).
    """
    behind = await room_settle(room, timeout=0)
    if moved["missing"] == 0 and not behind:
        return round(moved["latency"], 3)
    left = BOUND_SECONDS - (time.monotonic() - killed_at)
    if await room_settle(room, timeout=max(0.0, left)):
        return None
    return round(time.monotonic() - killed_at, 3)  # polled every 0.2 s, so coarser than the wave's time


async def primary_restart(ha, port: int) -> float:
    """Start the killed server again and wait until it is a replica in sync; return the seconds taken."""
    started = time.monotonic()
    await asyncio.to_thread(ha.restart, port)
    await asyncio.to_thread(ha.wait_replicas, 1, BOUND_SECONDS)
    return round(time.monotonic() - started, 3)


# The sentinels' own account of a failover, in the order it happens.
MARKS = {"+sdown master": "sdown", "+odown master": "odown", "+promoted-slave": "promoted", "+switch-master": "switch"}


def sentinel_marks(ha, old: int, killed_wall: float) -> dict[str, float]:
    """Return seconds from the kill to the first sentinel logging each step of the failover of ``old``.

    From the sentinels' logs (millisecond wall-clock stamps, this machine's
    clock): +sdown (one sentinel holds it down), +odown (a quorum does),
    +promoted-slave (the leader promoted the replica), +switch-master (a
    sentinel names the new primary). Finer than polling the sentinels.
    """
    found: dict[str, float] = {}
    for proc in ha.sentinels:
        for line in proc.log_path.read_text(errors="replace").splitlines():
            step = next((name for mark, name in MARKS.items() if mark in line), None)
            at = _log_time(line) if step and f" {old}" in line else None
            if at is not None and at >= killed_wall - 0.5:
                found[step] = min(found.get(step, at), at)
    return {step: round(found[step] - killed_wall, 3) for step in MARKS.values() if step in found}


def _log_time(line: str) -> float | None:
    """Return the epoch seconds of a Redis log line ("pid:X 07 Dec 2026 07:29:14.998 # ...")."""
    try:
        stamp = line.split(" ", 1)[1].split(" #", 1)[0].strip()
        whole, _, millis = stamp.rpartition(".")
        return time.mktime(time.strptime(whole, "%d %b %Y %H:%M:%S")) + int(millis) / 1000
    except (IndexError, ValueError):
        return None


def rounds_summary(rounds: list[dict]) -> dict:
    """Return p50/p99 of the three times over the rounds that settled, and how many did not."""

    def times(key: str) -> list[float]:
        return [r[key] for r in rounds if r[key] is not None]

    return {
        "kills": len(rounds),
        "unsettled": sum(1 for r in rounds if r["settled_s"] is None),
        "settled_ms": summary_ms(times("settled_s")),
        "promoted_ms": summary_ms(times("promoted_s")),
        "after_promotion_ms": summary_ms(times("after_promotion_s")),
    }


# -- the REST API as the page calls it ----------------------------------------------------


async def cancel_retried(port: int, token: str) -> dict:
    """Cancel one visit, retrying a 503 after its Retry-After; return the status, the retries and the seconds."""
    started = time.monotonic()
    retries = 0
    while True:
        status, retry_after = await post_once(port, "/api/queue/cancel", token)
        if status != 503 or time.monotonic() - started > BOUND_SECONDS:
            return {"status": status, "retries": retries, "seconds": round(time.monotonic() - started, 3)}
        retries += 1
        await asyncio.sleep(retry_after)


async def post_once(port: int, path: str, token: str) -> tuple[int, float]:
    """POST on a fresh connection; return the status and the Retry-After seconds (a default if none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        writer.write((head + "Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
        lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND_SECONDS)).decode("latin1").split("\r\n")
    finally:
        writer.close()
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    return int(lines[0].split()[1]), float(fields.get("retry-after", RETRY_AFTER_DEFAULT))


# -- the nodes' own view --------------------------------------------------------------------


async def metrics_scrape(ports: list[int]) -> list[dict[str, float]]:
    """Return each node's failover counter and recovery histogram sum and count from its /metrics."""
    return await fanout.metrics_scrape(ports, set(METRICS))


def metrics_delta(before: list[dict], after: list[dict]) -> list[dict]:
    """Return each node's failovers in a round, the mean recovery it timed, and its running totals."""
    out = []
    for b, a in zip(before, after, strict=True):
        count = a.get(f"{RECOVERY}_count", 0) - b.get(f"{RECOVERY}_count", 0)
        seconds = a.get(f"{RECOVERY}_sum", 0) - b.get(f"{RECOVERY}_sum", 0)
        out.append(
            {
                "failovers": int(a.get(FAILOVERS, 0) - b.get(FAILOVERS, 0)),
                "recovery_s": round(seconds / count, 3) if count else None,
                "failovers_total": int(a.get(FAILOVERS, 0)),
                "recovery_count_total": int(a.get(f"{RECOVERY}_count", 0)),
                "recovery_sum_total_s": round(a.get(f"{RECOVERY}_sum", 0), 3),
            }
        )
    return out


async def nodes_ready(ports: list[int], timeout: float = 30) -> list[str | None]:
    """Wait until every node's /readyz says "ok" for its Redis primary; return the last verdicts."""
    deadline = time.monotonic() + timeout
    while True:
        verdicts = [await node_ready(port) for port in ports]
        if all(v == "ok" for v in verdicts) or time.monotonic() > deadline:
            return verdicts
        await asyncio.sleep(0.5)


async def node_ready(port: int) -> str | None:
    """Return a node's /readyz verdict on its Redis primary ("ok" once it follows the sentinels' choice)."""
    conn = await HttpConn(port).open()
    try:
        _, body = await conn.request("GET", "/readyz")  # a 503 too: without a beat the matcher check fails
    finally:
        conn.close()
    return ((body or {}).get("checks") or {}).get("redisPrimary")
