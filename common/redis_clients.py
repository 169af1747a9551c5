"""Every Redis client of HearO, from one place: a plain URL or Sentinel discovery.

``REDIS_URL`` names one server. ``REDIS_SENTINELS`` (with
``REDIS_SENTINEL_MASTER``) names the sentinels instead, and every client asks
them where the primary is: on connect, and again after any connection error,
so when a replica is promoted each pool follows it without a restart. The
channel layer, the rank broadcast and its subscribers, the cache (leases,
tokens, rate limits), the connection caps and the lease fast path all take
their clients or pools from here; Celery gets the matching ``sentinel://``
broker URL from the settings.

This process also keeps watch over which primary its connections reach: a
connection made to another address than the last one is a failover, counted in
``hearo_redis_failovers_total`` with the time since this process first saw
the old primary fail (``hearo_redis_failover_recovery_seconds``); /readyz
compares the address with what the sentinels say now.
"""

import functools
import logging
import threading
import time

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from django.conf import settings
from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool

from common import metrics

log = logging.getLogger(__name__)

# How long a question to a sentinel may take; one that does not answer is skipped.
SENTINEL_TIMEOUT_SECONDS = 1.0


def redis_enabled() -> bool:
    """Return whether HearO runs on Redis (one server or behind sentinels)."""
    return bool(settings.REDIS_URL or settings.REDIS_SENTINELS)


def sentinel_mode() -> bool:
    return bool(settings.REDIS_SENTINELS)


# -- the failover watch ---------------------------------------------------------


class PrimaryWatch:
    """Which primary this process's connections reach, and since when it lost one.

    Fed by every Sentinel-managed connection as it connects (or fails to), and
    by long-lived readers (the rank hub, the channel-layer receive) when their
    connection breaks. Plain attributes under a lock: connections connect from
    the event loop and from worker threads alike.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.address: tuple[str, int] | None = None
        self.lost_at: float | None = None  # monotonic; None while connected
        self.failovers = 0

    def connected(self, address: tuple[str, int]) -> None:
        with self._lock:
            before, lost_at = self.address, self.lost_at
            self.address, self.lost_at = address, None
            if before is None or before == address:
                return
            self.failovers += 1
        seconds = time.monotonic() - lost_at if lost_at is not None else 0.0
        metrics.redis_failovers.inc()
        metrics.redis_recovery.observe(seconds)
        log.warning(
            "Redis primary is now %s:%s (was %s:%s); this process recovered in %.1f s",
            *address,
            *before,
            seconds,
            extra={"event": "redis.failover", "recovery_seconds": round(seconds, 3)},
        )

    def lost(self) -> None:
        """Note that a connection to the primary broke (the first of a gap counts)."""
        with self._lock:
            if self.lost_at is None:
                self.lost_at = time.monotonic()

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self.address, self.lost_at, self.failovers = None, None, 0


watch = PrimaryWatch()


class WatchedConnection(redis.sentinel.SentinelManagedConnection):
    def connect_to(self, address):
        try:
            super().connect_to(address)
        except redis.ConnectionError:
            watch.lost()
            raise
        if self.connection_pool.is_master:
            watch.connected(tuple(address))


class AsyncWatchedConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def connect_to(self, address):
        try:
            await super().connect_to(address)
        except redis.ConnectionError:
            watch.lost()
            raise
        if self.connection_pool.is_master:
            watch.connected(tuple(address))


# -- pools and clients ------------------------------------------------------------


def _sentinel_kwargs() -> dict:
    return {"socket_timeout": SENTINEL_TIMEOUT_SECONDS, "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS}


def sentinel_manager() -> redis.sentinel.Sentinel:
    """Return this process's synchronous client of the sentinels themselves (one per sentinel list)."""
    return _sentinel_manager(tuple(settings.REDIS_SENTINELS))


@functools.cache
def _sentinel_manager(sentinels: tuple) -> redis.sentinel.Sentinel:
    # One per process: /readyz asks on every probe, and each Sentinel holds a pool per sentinel.
    return redis.sentinel.Sentinel(list(sentinels), sentinel_kwargs=_sentinel_kwargs())


def sync_pool(**options) -> redis.ConnectionPool:
    """Return a connection pool to the primary (the Django cache's, the publisher's)."""
    if not sentinel_mode():
        return redis.ConnectionPool.from_url(settings.REDIS_URL, **options)
    options.setdefault("connection_class", WatchedConnection)
    return redis.sentinel.SentinelConnectionPool(settings.REDIS_SENTINEL_MASTER, sentinel_manager(), **options)


def sync_client(**options) -> redis.Redis:
    return redis.Redis(connection_pool=sync_pool(**options))


class AsyncBlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, AsyncBlockingConnectionPool):
    """Sentinel discovery with the blocking pool's wait for a free connection (see realtime/layers.py)."""


def async_pool(*, blocking_timeout: float | None = None, **options) -> redis.asyncio.ConnectionPool:
    """Return an asyncio connection pool to the primary; ``blocking_timeout``: wait for a free connection."""
    if not sentinel_mode():
        if blocking_timeout is not None:
            return AsyncBlockingConnectionPool.from_url(settings.REDIS_URL, timeout=blocking_timeout, **options)
        return redis.asyncio.ConnectionPool.from_url(settings.REDIS_URL, **options)
    manager = redis.asyncio.sentinel.Sentinel(list(settings.REDIS_SENTINELS), sentinel_kwargs=_sentinel_kwargs())
    options.setdefault("connection_class", AsyncWatchedConnection)
    if blocking_timeout is not None:
        return AsyncBlockingSentinelPool(settings.REDIS_SENTINEL_MASTER, manager, timeout=blocking_timeout, **options)
    return redis.asyncio.sentinel.SentinelConnectionPool(settings.REDIS_SENTINEL_MASTER, manager, **options)


def async_client(**options) -> redis.asyncio.Redis:
    """Return an asyncio client of the primary (bind it to one event loop)."""
    return redis.asyncio.Redis(connection_pool=async_pool(**options))


class CachePool(redis.ConnectionPool):
    """Django's RedisCache ``pool_class``: its LOCATION is a label, the pool comes from here.

    One pool per process and options. Django makes a cache backend per thread
    and per asyncio context, so under ASGI every request built a client, a pool
    and a fresh TCP connection to Redis, and dropped them after (a py-spy
    profile of the cancel request: ~10% of the view's time). redis-py's pools
    are thread-safe and start afresh in a forked child.
    """

    @classmethod
    def from_url(cls, url, **options):
        sentinels = (tuple(settings.REDIS_SENTINELS), settings.REDIS_SENTINEL_MASTER) if sentinel_mode() else None
        key = (url, sentinels, tuple(sorted((name, repr(value)) for name, value in options.items())))
        with _cache_pools_lock:
            pool = _cache_pools.get(key)
            if pool is None:
                pool = _cache_pools[key] = sync_pool(**options) if sentinels else super().from_url(url, **options)
            return pool


_cache_pools: dict[tuple, redis.ConnectionPool] = {}
_cache_pools_lock = threading.Lock()


# -- what the sentinels say now -------------------------------------------------------


def primary_named() -> tuple[str, int]:
    """Return the primary the sentinels name now (raises MasterNotFoundError)."""
    return sentinel_manager().discover_master(settings.REDIS_SENTINEL_MASTER)


def server_id() -> str:
    """Return the run id of the Redis server the clients reach now ("" without Redis).

    A restart or a promoted replica has another one: the lease sweep tells by it
    that the leases it finds may be older than what the clients were told.
    """
    if not redis_enabled():
        return ""
    global _id_client
    if _id_client is None:
        _id_client = sync_client(socket_timeout=2, socket_connect_timeout=2)
    return _id_client.info("server")["run_id"]


_id_client: redis.Redis | None = None
