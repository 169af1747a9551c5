"""Scenario 1: rank fan-out to N STOMP clients on 2 Daphne nodes (hub and naive designs).

A change is either a customer's cancel (``POST /api/queue/cancel`` on node A,
t0 just before sending) or a matcher burst: the first ``burst`` customers
marked MATCHED in one transaction that publishes one queue change, made by
the harness through ``queues.services.queue_changed`` (t0 just before the
transaction). Latency is t0 until the last client whose rank changed holds
its new rank; a client that never gets there within the bound is missing.
"""

import asyncio
import random
import time
from contextlib import asynccontextmanager

from bench import redis_count, seed
from bench.clients import HttpConn
from bench.cluster import BENCH_DB
from bench.cpu import CpuWindow
from bench.harness_gc import harness_frozen
from bench.room import Room, room_close, room_open_hearo
from bench.stats import summary_ms

GAP_SECONDS = 0.2


async def cancel(room: Room, http: HttpConn, rng: random.Random, bound: float) -> dict:
    index = rng.randrange(len(room.order))
    token = room.tokens[room.order[index].key]
    wave = room.remove([index])
    t0 = time.monotonic()
    status, _ = await http.request("POST", "/api/queue/cancel", {"Authorization": f"Bearer {token}"})
    request_s = time.monotonic() - t0
    result = await wave.wait(t0, bound)
    return {"kind": "cancel", "status": status, "request_s": request_s, **result}


async def burst(room: Room, size: int, bound: float) -> dict:
    ids = [s.key for s in room.order[:size]]
    wave = room.remove(list(range(len(ids))))
    t0 = time.monotonic()
    moved = await asyncio.to_thread(seed.burst_remove, ids)
    request_s = time.monotonic() - t0
    result = await wave.wait(t0, bound)
    return {"kind": "burst", "status": 200 if moved == len(ids) else 500, "request_s": request_s, **result}


WARMUP_CHANGES = 2


async def changes_run(room: Room, http: HttpConn, plan: dict, rng: random.Random) -> list[dict]:
    """Make ``plan['changes']`` changes one after another; every ``burst_every``-th is a burst."""
    out = []
    every = plan.get("burst_every", 0)
    for i in range(plan["changes"]):
        if len(room.order) <= plan["burst_size"] + 1:
            break
        if every and i % every == every - 1:
            out.append(await burst(room, plan["burst_size"], plan["bound"]))
        else:
            out.append(await cancel(room, http, rng, plan["bound"]))
        await asyncio.sleep(GAP_SECONDS)
    return out


def changes_summary(changes: list[dict]) -> dict:
    """Latency over complete changes; missing and wrong counts over all of them."""

    def of(kind: str | None) -> dict:
        rows = [c for c in changes if kind is None or c["kind"] == kind]
        done = [c["latency"] for c in rows if c["latency"] is not None]
        return {
            "changes": len(rows),
            "complete": len(done),
            "latency_ms": summary_ms(done),
            "missing": sum(c["missing"] for c in rows),
            "wrong_msgs": sum(c["wrong_msgs"] for c in rows),
            "affected_mean": round(sum(c["affected"] for c in rows) / len(rows), 1) if rows else 0,
            "request_ms": summary_ms([c["request_s"] for c in rows]),
            "http_errors": sum(1 for c in rows if c["status"] != 200),
        }

    return {"all": of(None), "cancel": of("cancel"), "burst": of("burst")}


async def redis_per_change(room: Room, http: HttpConn, ctx, bound: float) -> dict:
    """Redis commands and channel-layer messages of one quiet cancel and one quiet burst."""
    rng = random.Random(7)
    results = {}
    for kind in ("cancel", "burst"):

        async def action(kind=kind):
            if kind == "cancel":
                results[kind + "_wave"] = await cancel(room, http, rng, bound)
            else:
                results[kind + "_wave"] = await burst(room, 5, bound)

        results[kind] = await redis_count.per_change(ctx.redis_port, action, ctx.buckets)
        await asyncio.sleep(GAP_SECONDS)
    return results


def cpu_window(cluster, ctx) -> CpuWindow:
    """Watch every process a change runs through: the nodes, Redis, PostgreSQL (and the harness, always)."""
    named = {f"node {chr(ord('A') + i)}": proc.pid for i, proc in enumerate(cluster.nodes)}
    named.update({"REST node" if i == 0 else f"REST node {i + 1}": p.pid for i, p in enumerate(cluster.rest_nodes)})
    groups = {"Redis": ("redis-server", f":{ctx.redis_port}"), "PostgreSQL": ("postgres:", BENCH_DB)}
    return CpuWindow(named, groups)


def api_port(cluster) -> int:
    """Where the changes' requests go: the REST node if the cluster has one (compose's proxy sends /api/ there)."""
    return (cluster.rest_ports or cluster.ports)[0]


@asynccontextmanager
async def hearo_room(cluster, n: int):
    """Seed n customers, connect every one to the cluster; yield (room, HTTP conn for the changes, seats)."""
    await asyncio.to_thread(seed.queue_reset)
    seats = await asyncio.to_thread(seed.customers_seed, n)
    room, connect_s = await room_open_hearo(cluster.ports, seats)
    room.connect_s = connect_s
    http = await HttpConn(api_port(cluster)).open()
    try:
        yield room, http, seats
    finally:
        http.close()
        await room_close(room)


async def fanout_measure(
    ctx, ports, room: Room, http: HttpConn, plan: dict, *, cpu: CpuWindow, count_redis: bool = True
) -> dict:
    """Make the planned changes, audit every client, count Redis commands; return the results.

    ``cpu``: the processes whose CPU time per change is recorded over the measured changes.
    """
    n = len(room.order)
    # Warm-up, not counted: a node's first cancel and first matcher trigger
    # pay one-off costs (Celery's first publish, lazy imports) in any design.
    await changes_run(room, http, {**plan, "changes": WARMUP_CHANGES}, random.Random(-n))
    before = await node_scrape(ports)
    with harness_frozen() as harness_gc:
        cpu.start()
        changes = await changes_run(room, http, plan, random.Random(n))
        cpu.stop()
    await asyncio.sleep(1.0)
    after = await node_scrape(ports)
    idle = cpu.idle_like()
    idle.start()
    await asyncio.sleep(cpu.wall_s)
    idle.stop()
    server_ms = node_fanout_mean_ms(before, after)
    audit = room.audit(await asyncio.to_thread(seed.queue_truth))
    result = {"n": n, "connect_s": round(room.connect_s, 1), "connect_retries": len(room.retries), "audit": audit}
    result.update(changes_summary(changes))
    result["node_fanout_mean_ms"] = server_ms
    result["node_full_collections"] = node_full_collections(before, after)
    result["harness_full_collections"] = harness_gc
    result["cpu_per_change"] = cpu.per_change(len(changes), idle)
    result["changes_raw"] = changes
    if count_redis:
        result["redis"] = await redis_per_change(room, http, ctx, plan["bound"])
    return result


FANOUT_SUM, FANOUT_COUNT = "hearo_fanout_seconds_sum", "hearo_fanout_seconds_count"
GC_FULL = 'hearo_gc_pause_seconds_{}{{generation="2"}}'
GC_FULL_UNDER = 'hearo_gc_pause_seconds_bucket{generation="2",le="0.1"}'
# The freeze policy's acts (realtime/gc_policy.py): "leak" and "age" unfreeze and collect the whole heap.
GC_FREEZE_REASONS = ("boot", "start-up", "storm", "leak", "age")
GC_FREEZES = 'hearo_gc_freezes_total{{reason="{}"}}'


async def node_scrape(ports: list[int]) -> list[dict[str, float]]:
    """Return each node's fan-out and full-collection (generation 2) figures from its /metrics."""
    wanted = {FANOUT_SUM, FANOUT_COUNT, GC_FULL.format("sum"), GC_FULL.format("count"), GC_FULL_UNDER}
    wanted |= {GC_FREEZES.format(reason) for reason in GC_FREEZE_REASONS}
    return await metrics_scrape(ports, wanted)


async def metrics_scrape(ports: list[int], wanted: set[str]) -> list[dict[str, float]]:
    """Return the ``wanted`` samples (name with labels) of each node's /metrics."""
    out = []
    for port in ports:
        conn = await HttpConn(port).open()
        try:
            conn.writer.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            _, text = await conn._response()
        finally:
            conn.close()
        pairs = (line.rsplit(" ", 1) for line in text.decode().splitlines() if not line.startswith("#"))
        out.append({name: float(value) for name, value in pairs if name in wanted})
    return out


def node_fanout_mean_ms(before: list[dict], after: list[dict]) -> list[float | None]:
    """Return each node's mean server-side fan-out time (ms) between two scrapes."""
    means = []
    for b, a in zip(before, after, strict=True):
        count = a.get(FANOUT_COUNT, 0) - b.get(FANOUT_COUNT, 0)
        means.append(round((a.get(FANOUT_SUM, 0) - b.get(FANOUT_SUM, 0)) / count * 1000, 1) if count else None)
    return means


def node_full_collections(before: list[dict], after: list[dict]) -> list[dict]:
    """Return each node's full garbage collections between two scrapes: how many, their total, how many > 100 ms.

    ``freezes``: the freeze policy's acts in the window, by reason (its collections are among the full ones).
    """

    def delta(b: dict, a: dict, key: str) -> float:
        return a.get(key, 0) - b.get(key, 0)

    return [
        {
            "count": int(delta(b, a, GC_FULL.format("count"))),
            "total_ms": round(delta(b, a, GC_FULL.format("sum")) * 1000, 1),
            "over_100ms": int(delta(b, a, GC_FULL.format("count")) - delta(b, a, GC_FULL_UNDER)),
            "freezes": {
                reason: int(n) for reason in GC_FREEZE_REASONS if (n := delta(b, a, GC_FREEZES.format(reason)))
            },
        }
        for b, a in zip(before, after, strict=True)
    ]
