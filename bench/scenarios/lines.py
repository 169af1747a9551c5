"""Scenario 1b: the rank fan-out with 3 queues x 2 languages (issue #13), beside one queue at the same N.

N customers are seeded round robin into six lines (general, youth, crisis;
Korean and English), so each line holds N/6 in arrival order and the lines
interleave in time. Each client's expected rank is its place in its own
line. A **cancel** (a random customer, ``POST /api/queue/cancel`` on node A)
moves only the clients behind it in its line; a **matcher burst** takes the
5 earliest arrivals, whichever lines they wait in, in one transaction that
publishes one queue change naming their queues, as the matcher pass does,
and moves everyone behind them in those lines. Every hub then re-reads only
the queues named. Latency, *missing* and *wrong* as in scenario 1.
"""

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bench import redis_count, seed
from bench.clients import HttpConn
from bench.harness_gc import harness_frozen
from bench.room import Room, room_close, room_open_hearo
from bench.scenarios.fanout import (
    GAP_SECONDS,
    WARMUP_CHANGES,
    api_port,
    changes_summary,
    node_fanout_mean_ms,
    node_full_collections,
    node_scrape,
)

Line = tuple[str, str]  # (queue id, language)


@dataclass
class Lines:
    """One room per line (its clients in rank order)."""

    rooms: dict[Line, Room]
    connect_s: float = 0.0

    def __len__(self) -> int:
        return sum(len(room.order) for room in self.rooms.values())

    def pick(self, rng: random.Random) -> tuple[Line, int]:
        """Return a random waiting client (every client equally likely) as (its line, its index there)."""
        index = rng.randrange(len(self))
        for line, room in self.rooms.items():
            if index < len(room.order):
                return line, index
            index -= len(room.order)
        raise AssertionError("unreachable")

    def earliest(self, size: int) -> dict[Line, list[int]]:
        """Return the ``size`` earliest arrivals across the lines, as each line's indices.

        Seeded registration ids go up with the joining time, so the smallest ids arrived first.
        """
        heads = [(s.key, line, i) for line, room in self.rooms.items() for i, s in enumerate(room.order[:size])]
        chosen: dict[Line, list[int]] = {}
        for _, line, i in sorted(heads)[:size]:
            chosen.setdefault(line, []).append(i)
        return chosen

    def audit(self, truth: dict[Line, list[int]]) -> dict:
        """Add up every line's audit against that line's order in the database."""
        audits = [room.audit(truth.get(line, [])) for line, room in self.rooms.items()]
        return {key: sum(a[key] for a in audits) for key in audits[0]}


async def waves_wait(waves: list, t0: float, bound: float) -> dict:
    """Wait for the waves of one change (one per line it moved); merge them as one wave's result."""
    results = await asyncio.gather(*(wave.wait(t0, bound) for wave in waves))
    moved = [r for r in results if r["affected"]]
    latencies = [r["latency"] for r in moved]
    return {
        "affected": sum(r["affected"] for r in results),
        "missing": sum(r["missing"] for r in results),
        "wrong_msgs": sum(r["wrong_msgs"] for r in results),
        # As in one line: complete only when every moved client got its rank (None if nobody moved).
        "latency": max(latencies) if moved and None not in latencies else None,
    }


async def cancel(lines: Lines, http: HttpConn, rng: random.Random, bound: float) -> dict:
    line, index = lines.pick(rng)
    room = lines.rooms[line]
    token = room.tokens[room.order[index].key]
    wave = room.remove([index])
    t0 = time.monotonic()
    status, _ = await http.request("POST", "/api/queue/cancel", {"Authorization": f"Bearer {token}"})
    request_s = time.monotonic() - t0
    result = await waves_wait([wave], t0, bound)
    return {"kind": "cancel", "status": status, "request_s": request_s, "lines": 1, **result}


async def burst(lines: Lines, size: int, bound: float) -> dict:
    chosen = lines.earliest(size)
    ids = [lines.rooms[line].order[i].key for line, indices in chosen.items() for i in indices]
    queue_ids = sorted({queue_id for queue_id, _ in chosen})
    waves = [lines.rooms[line].remove(indices) for line, indices in chosen.items()]
    t0 = time.monotonic()
    moved = await asyncio.to_thread(seed.burst_remove, ids, queue_ids)
    request_s = time.monotonic() - t0
    result = await waves_wait(waves, t0, bound)
    status = 200 if moved == len(ids) else 500
    return {"kind": "burst", "status": status, "request_s": request_s, "lines": len(chosen), **result}


async def changes_run(lines: Lines, http: HttpConn, plan: dict, rng: random.Random) -> list[dict]:
    """Make ``plan['changes']`` changes one after another; every ``burst_every``-th is a burst."""
    out = []
    every = plan.get("burst_every", 0)
    for i in range(plan["changes"]):
        if min(len(room.order) for room in lines.rooms.values()) <= plan["burst_size"] + 1:
            break
        if every and i % every == every - 1:
            out.append(await burst(lines, plan["burst_size"], plan["bound"]))
        else:
            out.append(await cancel(lines, http, rng, plan["bound"]))
        await asyncio.sleep(GAP_SECONDS)
    return out


@asynccontextmanager
async def lines_room(cluster, n: int):
    """Seed n customers over the six lines, connect every one; yield (lines, HTTP conn for the changes)."""
    await asyncio.to_thread(seed.queue_reset)
    seats = await asyncio.to_thread(seed.lines_seed, n)
    rooms, connect_s = {}, 0.0
    try:
        for line, line_seats in seats.items():
            rooms[line], took = await room_open_hearo(cluster.ports, line_seats)
            connect_s += took
        lines = Lines(rooms, connect_s)
        http = await HttpConn(api_port(cluster)).open()
        try:
            yield lines, http
        finally:
            http.close()
    finally:
        await asyncio.gather(*(room_close(room) for room in rooms.values()))
        await asyncio.to_thread(seed.queue_reset)
        await asyncio.to_thread(seed.lines_drop)


async def redis_per_change(lines: Lines, http: HttpConn, ctx, bound: float) -> dict:
    """Redis commands and channel-layer messages of one quiet cancel and one quiet burst across lines."""
    rng = random.Random(7)
    results = {}
    for kind in ("cancel", "burst"):

        async def action(kind=kind):
            change = cancel(lines, http, rng, bound) if kind == "cancel" else burst(lines, 5, bound)
            results[kind + "_wave"] = await change

        results[kind] = await redis_count.per_change(ctx.redis_port, action, ctx.buckets)
        await asyncio.sleep(GAP_SECONDS)
    return results


async def lines_measure(ctx, ports, lines: Lines, http: HttpConn, plan: dict) -> dict:
    """Make the planned changes, audit every client against its line, count Redis commands; return the results."""
    n = len(lines)
    # Warm-up, not counted, as in scenario 1.
    await changes_run(lines, http, {**plan, "changes": WARMUP_CHANGES}, random.Random(-n))
    before = await node_scrape(ports)
    with harness_frozen() as harness_gc:
        changes = await changes_run(lines, http, plan, random.Random(n))
    await asyncio.sleep(1.0)
    after = await node_scrape(ports)
    audit = lines.audit(await asyncio.to_thread(seed.lines_truth))
    result = {
        "n": n,
        "lines": {f"{q}/{lang}": len(room.order) for (q, lang), room in lines.rooms.items()},
        "connect_s": round(lines.connect_s, 1),
        "connect_retries": sum(len(room.retries) for room in lines.rooms.values()),
        "audit": audit,
    }
    result.update(changes_summary(changes))
    result["lines_per_burst"] = [c["lines"] for c in changes if c["kind"] == "burst"]
    result["node_fanout_mean_ms"] = node_fanout_mean_ms(before, after)
    result["node_full_collections"] = node_full_collections(before, after)
    result["harness_full_collections"] = harness_gc
    result["changes_raw"] = changes
    result["redis"] = await redis_per_change(lines, http, ctx, plan["bound"])
    return result
