"""Connection caps, per process or across the cluster.

One customer token could open hundreds of sockets; at most
HEARO_MAX_CONNECTIONS_PER_CUSTOMER are let in. Before it authenticates, a
socket counts against its client address instead: at most
HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS per address, the same machinery
keyed by the address. Without Redis (the embedded
default: one process) the count is a dict in this process. With Redis every
node shares it: one sorted set per customer (or address), one member per connection,
scored with the time its node last vouched for the socket. Each node
refreshes the members of the sockets it still holds every third of
HEARO_CONNECTION_SLOT_SECONDS, so the members of a node that died without
releasing them (SIGKILL) stop counting once they are that old: the next
acquire prunes them, and the whole set expires if nobody comes back.
"""

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from functools import cache as once

from django.conf import settings
from django.core.cache import caches
from redis.exceptions import RedisError

from common import redis_clients

log = logging.getLogger(__name__)
# Sockets whose slots are refreshed in one script call.
REFRESH_BATCH = 500

# Prune, count and add in one step on the server: two nodes never both take the last slot.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Vouch for many sockets at once: their sets in KEYS, the time and lifetime, then their members.
# XX: a member a concurrent release just removed is never added back.
_REFRESH = """
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', ARGV[1], ARGV[i + 2])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return #KEYS
"""


@dataclass(frozen=True)
class Slot:
    owner: str  # "customer:<id>" or "address:<ip>"
    key: str = ""  # the owner's sorted set; "" for a slot counted in this process
    member: str = ""


# -- one process (the embedded default, or Redis unreachable) --------------------

_local: dict[str, int] = {}


def _local_acquire(owner: str, cap: int) -> Slot | None:
    if _local.get(owner, 0) >= cap:
        return None
    _local[owner] = _local.get(owner, 0) + 1
    return Slot(owner)


def _local_release(owner: str) -> None:
    left = _local.get(owner, 1) - 1
    if left > 0:
        _local[owner] = left
    else:
        _local.pop(owner, None)


# -- the cluster (Redis) -------------------------------------------------------------


class _Node:
    """This event loop's Redis client and the slots its sockets hold."""

    def __init__(self) -> None:
        self.client = redis_clients.async_client(socket_timeout=2)
        self.acquire = self.client.register_script(_ACQUIRE)
        self.refresh = self.client.register_script(_REFRESH)
        self.held: dict[str, str] = {}  # member -> key
        self.refresher: asyncio.Task | None = None

    def hold(self, slot: Slot) -> None:
        self.held[slot.member] = slot.key
        if self.refresher is None or self.refresher.done():
            self.refresher = asyncio.create_task(self._refresh_forever())

    def drop(self, slot: Slot) -> None:
        self.held.pop(slot.member, None)
        if not self.held and self.refresher is not None:
            self.refresher.cancel()  # nothing to vouch for; the next hold starts it again
            self.refresher = None

    async def _refresh_forever(self) -> None:
        seconds = settings.HEARO_CONNECTION_SLOT_SECONDS
        while self.held:
            await asyncio.sleep(seconds / 3)
            held = list(self.held.items())
            for start in range(0, len(held), REFRESH_BATCH):
                await self.vouch(held[start : start + REFRESH_BATCH], seconds)

    async def vouch(self, held: list[tuple[str, str]], seconds: int) -> None:
        """Refresh these (member, key) slots in one script call.

        A pipeline of two commands per socket cost the event loop ~20 µs per
        socket to build and parse (milliseconds per hundred, every interval).
        """
        keys = [key for _, key in held]
        try:
            await self.refresh(keys=keys, args=[time.time(), seconds, *(member for member, _ in held)])
        except RedisError as exc:
            log.warning("could not refresh %d connection slots: %s", len(held), exc)


_nodes: dict[asyncio.AbstractEventLoop, _Node] = {}


def _node() -> _Node:
    loop = asyncio.get_running_loop()
    node = _nodes.get(loop)
    if node is None:
        node = _nodes[loop] = _Node()
    return node


def _key(customer_id: str) -> str:
    return _owner_key(f"customer:{customer_id}")


@once
def _key_maker():
    """A cache backend of our own, for key names only: it never connects.

    ``django.core.cache.cache`` is a fresh backend object in every asyncio
    task's context, so reaching it from each socket's task left one per socket.
    """
    return caches.create_connection("default")


def _owner_key(owner: str) -> str:
    return _key_maker().make_and_validate_key(f"connections:{owner}")


async def slot_acquire(customer_id: str) -> Slot | None:
    """Take one of the customer's connection slots; None when all are taken."""
    return await _acquire(f"customer:{customer_id}", settings.HEARO_MAX_CONNECTIONS_PER_CUSTOMER)


async def address_slot_acquire(address: str) -> Slot | None:
    """Take one of the address's unauthenticated-socket slots; None when all are taken."""
    return await _acquire(f"address:{address}", settings.HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS)


async def _acquire(owner: str, cap: int) -> Slot | None:
    if not redis_clients.redis_enabled():
        return _local_acquire(owner, cap)
    node, seconds = _node(), settings.HEARO_CONNECTION_SLOT_SECONDS
    slot, now = Slot(owner, _owner_key(owner), secrets.token_hex(8)), time.time()
    try:
        taken = await node.acquire(keys=[slot.key], args=[now, now - seconds, cap, slot.member, seconds])
    except RedisError as exc:
        # The channel layer is most likely down too; count on this node alone meanwhile.
        log.warning("connection cap falls back to this node: %s", exc)
        return _local_acquire(owner, cap)
    if not taken:
        return None
    node.hold(slot)
    return slot


async def slot_release(slot: Slot) -> None:
    """Give a slot back (the socket closed)."""
    if not slot.key:
        _local_release(slot.owner)
        return
    node = _node()
    node.drop(slot)
    try:
        await node.client.zrem(slot.key, slot.member)
    except RedisError as exc:
        log.warning("could not release a connection slot (it expires by itself): %s", exc)
