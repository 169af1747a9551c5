"""One lease keeper per event loop: the open sockets renew their customers' leases together.

An open socket is evidence the customer is there (a STOMP client may negotiate
heart-beat 0,0 and never send a frame), so a node renews the lease of every
customer it holds a socket for. Once per HEARO_HEARTBEAT_SECONDS the keeper
collects the customers no client frame renewed in the last half interval and
renews them all in pipelines of BATCH: one Redis round trip per batch from the
event loop, where a task per socket cost a task's memory per connection and a
thread hop per customer per interval.
"""

import asyncio
import logging
import time

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import redis_clients
from queues import leases

log = logging.getLogger(__name__)

# Leases renewed per pipeline: thousands in one would hold the loop while it is built and parsed.
BATCH = 500


class LeaseKeeper:
    def __init__(self) -> None:
        self.connections: set = set()  # customer PushConnections that are open
        self.task: asyncio.Task | None = None

    def hold(self, connection) -> None:
        self.connections.add(connection)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._keep())

    def drop(self, connection) -> None:
        self.connections.discard(connection)

    async def _keep(self) -> None:
        interval = settings.HEARO_HEARTBEAT_SECONDS
        while self.connections:
            await asyncio.sleep(interval)
            await self.renew_quiet(time.monotonic(), interval / 2)

    async def renew_quiet(self, now: float, quiet: float) -> int:
        """Renew the lease of every held customer not renewed in the last ``quiet`` seconds; return how many."""
        due = [c for c in self.connections if c.lease_due(now, quiet)]
        ids = [c.mark_renewed(now) for c in due]
        for start in range(0, len(ids), BATCH):
            try:
                await leases.arenew_many("registration", ids[start : start + BATCH])
            except (RedisConnectionError, RedisTimeoutError):
                # Failing over or restarting: the next interval tries again, and the
                # sweep expires nobody across a failover (queues/leases.py).
                redis_clients.watch.lost()
                log.info("could not renew %d leases: Redis unreachable", len(ids) - start)
                break
        return len(ids)


_keepers: dict[asyncio.AbstractEventLoop, LeaseKeeper] = {}


def lease_keeper() -> LeaseKeeper:
    """Return this event loop's keeper."""
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(loop)
    if keeper is None:
        keeper = _keepers[loop] = LeaseKeeper()
    return keeper
