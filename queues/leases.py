"""Leases: a registration (or counselor) is alive while its lease has not run out.

The lease lives in the cache (Redis with REDIS_URL, local memory otherwise)
as its expiry in epoch milliseconds, so a heartbeat costs one cache write and
no database write. The database keeps a coarse copy (``lease_expires_at``)
that only the matcher's sweep refreshes, never past the lease itself; see
``lease_copies_refresh`` and ``registration_expire_ghosts``.

Values are plain ints: Django's Redis cache stores ints unpickled, so the
async fast path (``abeat``) and the Django cache read the same keys.
"""

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Model

from common import redis_clients
from common.db import update_in_id_order

# Holds the run id of the Redis server that was given the leases. A Redis that
# restarted empty has lost it; a replica promoted by Sentinel has it, but with
# the old primary's run id and perhaps without the last renewals (replication is
# asynchronous). Either way the sweep then refreshes instead of expiring.
EPOCH_KEY = "lease:epoch"


def lease_key(kind: str, ident: int | str) -> str:
    """Return the cache key of one lease."""
    return f"lease:{kind}:{ident}"


def token_key(token_hash: str) -> str:
    """Return the cache key mapping an active visit's token hash to its registration id."""
    return f"lease:token:{token_hash}"


def _expiry_ms() -> int:
    return int((time.time() + settings.HEARO_LEASE_SECONDS) * 1000)


def lease_db_copy(now: datetime) -> datetime:
    """Return the database copy of a lease renewed at ``now`` (a full lease)."""
    return now + timedelta(seconds=settings.HEARO_LEASE_SECONDS)


def lease_renew(kind: str, ident: int | str) -> int:
    """Renew a lease for HEARO_LEASE_SECONDS; return its expiry (epoch ms)."""
    expires = _expiry_ms()
    cache.set(lease_key(kind, ident), expires, timeout=settings.HEARO_LEASE_SECONDS)
    return expires


def lease_drop(kind: str, ident: int | str) -> None:
    """Forget a lease (the visit ended)."""
    cache.delete(lease_key(kind, ident))


def lease_expiries(kind: str, idents: Iterable[int | str]) -> dict:
    """Return each running lease's expiry (epoch ms) by id; one whose lease ran out is absent (one cache round trip)."""
    by_key = {lease_key(kind, ident): ident for ident in idents}
    if not by_key:
        return {}
    now = int(time.time() * 1000)
    found = cache.get_many(list(by_key))
    return {by_key[key]: expires for key, expires in found.items() if isinstance(expires, int) and expires > now}


def lease_alive(kind: str, idents: Iterable[int | str]) -> set:
    """Return the subset of ids whose lease is still running (one cache round trip)."""
    return set(lease_expiries(kind, idents))


def lease_copies_refresh(model: type[Model], expiries: dict) -> None:
    """Set the database copy of each running lease to its expiry, floored to the matcher's interval.

    Never later than the lease, so the first sweep after a lease ran out finds
    its holder: a copy of a full lease from the sweep's time let a ghost (a page
    or dashboard closed just after a beat) stay in line, and be matched, for up
    to one lease more. Floored, the copies take a few values, one UPDATE each;
    a finer copy would find no ghost sooner than the next sweep anyway. The
    caller holds the rows already (``common.db.claim``).
    """
    step = settings.HEARO_MATCH_INTERVAL_SECONDS * 1000
    by_copy: dict[int, list] = defaultdict(list)
    for ident, expires in expiries.items():
        by_copy[expires // step * step].append(ident)
    for copy_ms, idents in sorted(by_copy.items()):
        copy = datetime.fromtimestamp(copy_ms / 1000, tz=UTC)
        update_in_id_order(model.objects.filter(pk__in=idents), lease_expires_at=copy)


def leases_intact() -> bool:
    """Return whether the cache holds the leases as given (False after a restart or a failover)."""
    return cache.get(EPOCH_KEY) == _epoch()


def leases_mark_intact() -> None:
    cache.set(EPOCH_KEY, _epoch(), timeout=None)


def _epoch() -> str:
    """Return what names the server holding the leases now (one process's memory without Redis)."""
    return redis_clients.server_id() or "local"


# -- the async fast path (the heartbeat endpoint) --------------------------------

_clients: dict[asyncio.AbstractEventLoop, object] = {}


def _redis():
    """Return this event loop's redis.asyncio client (None without Redis)."""
    if not redis_clients.redis_enabled():
        return None
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = redis_clients.async_client(socket_timeout=2)
    return client


# Many leases in one command: the key prefix, the expiry and the lease time, then the ids.
_RENEW_MANY = """
for i = 4, #ARGV do
  redis.call('SET', ARGV[1] .. ARGV[i], ARGV[2], 'EX', ARGV[3])
end
return #ARGV - 3
"""


async def arenew_many(kind: str, idents: list[int | str]) -> None:
    """Renew many leases from the event loop: one command to Redis, no thread.

    The same keys and values as ``lease_renew``; a socket node renews every
    quiet customer it holds this way once per heartbeat interval. One script
    call per batch: a pipeline built and parsed a command per lease held the
    node's loop (and a CPU) for milliseconds per hundred leases, every interval.
    """
    if not idents:
        return
    client = _redis()
    expires = _expiry_ms()
    if client is None:  # one process, local memory: no I/O to wait for
        cache.set_many({lease_key(kind, i): expires for i in idents}, timeout=settings.HEARO_LEASE_SECONDS)
        return
    prefix = cache.make_and_validate_key(lease_key(kind, ""))
    await _script(client, _RENEW_MANY)(args=[prefix, expires, settings.HEARO_LEASE_SECONDS, *idents])


# One round trip for a whole beat: the visit's token -> registration id, then its lease.
_BEAT = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
redis.call('SET', ARGV[1] .. id, ARGV[2], 'EX', ARGV[3])
return id
"""
_scripts: dict[tuple[asyncio.AbstractEventLoop, str], object] = {}


def _script(client, source: str):
    """Return this event loop's registered script (redis-py reloads it after a Redis restart)."""
    key = (asyncio.get_running_loop(), source)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(source)
    return script


async def abeat(token_hash: str) -> int | None:
    """Renew the lease of the visit a cached token belongs to; return its expiry, or None on a cache miss.

    With Redis this is one EVALSHA (redis-py reloads the script after a Redis
    restart); the keys are the very ones ``lease_renew`` and the token cache use.
    """
    client = _redis()
    if client is None:
        registration_id = cache.get(token_key(token_hash))
        return None if registration_id is None else lease_renew("registration", registration_id)
    expires = _expiry_ms()
    lease_prefix = cache.make_and_validate_key(lease_key("registration", ""))
    found = await _script(client, _BEAT)(
        keys=[cache.make_and_validate_key(token_key(token_hash))],
        args=[lease_prefix, expires, settings.HEARO_LEASE_SECONDS],
    )
    return None if found is None else expires
