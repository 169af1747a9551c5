"""Scenario 4: Daphne RSS per idle STOMP connection (connected and subscribed, nothing flowing)."""

import asyncio

from bench import seed
from bench.cluster import rss_kib
from bench.room import room_close, room_open_hearo

WARM = 50


async def memory_per_connection(cluster, connections: int) -> dict:
    """Open WARM connections (imports, pools, the hub), then ``connections`` more to node A."""
    await asyncio.to_thread(seed.queue_reset)
    seats = await asyncio.to_thread(seed.customers_seed, WARM + connections)
    pid, port = cluster.pid(0), cluster.ports[0]
    warm, _ = await room_open_hearo([port], seats[:WARM])
    await asyncio.sleep(2)
    before = rss_kib(pid)
    idle, _ = await room_open_hearo([port], seats[WARM:], offset=WARM)
    await asyncio.sleep(3)
    after = rss_kib(pid)
    for room in (idle, warm):
        await room_close(room)
    return {
        "connections": connections,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round((after - before) / connections, 1),
    }
