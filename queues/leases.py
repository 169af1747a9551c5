"""Leases: a registration (or counselor) is alive while its lease has not run out.

The lease itself lives in the cache (Redis with REDIS_URL, local memory
otherwise) so a heartbeat costs one cache write, not a database write. The
database keeps a coarse copy (see ``registration_heartbeat``) so a Redis
restart does not turn every waiting customer into a ghost.
"""

import time
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache


def _key(kind: str, ident: int | str) -> str:
    return f"lease:{kind}:{ident}"


def lease_renew(kind: str, ident: int | str) -> float:
    """Renew a lease for HEARO_LEASE_SECONDS; return its expiry (epoch seconds)."""
    seconds = settings.HEARO_LEASE_SECONDS
    expires = time.time() + seconds
    cache.set(_key(kind, ident), expires, timeout=seconds)
    return expires


def lease_drop(kind: str, ident: int | str) -> None:
    """Forget a lease (the visit ended)."""
    cache.delete(_key(kind, ident))


def lease_alive(kind: str, idents: Iterable[int | str]) -> set:
    """Return the subset of ids whose lease is still running (one cache round trip)."""
    by_key = {_key(kind, ident): ident for ident in idents}
    if not by_key:
        return set()
    now = time.time()
    found = cache.get_many(list(by_key))
    return {by_key[key] for key, expires in found.items() if expires and expires > now}
