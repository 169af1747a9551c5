"""Database helpers every app's writers share, and who holds a database session for how long."""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections
from django.db.models import QuerySet

T = TypeVar("T")


def claim(queryset: QuerySet) -> QuerySet:
    """Lock the rows a pass is about to change, skipping rows another writer holds.

    On PostgreSQL two concurrent matchers each take the rows the other has
    not locked, so neither waits and no row is handed out twice. SQLite has
    no row locks; its IMMEDIATE transactions already run writers one at a time.
    """
    if not connection.features.has_select_for_update_skip_locked:
        return queryset
    return queryset.select_for_update(skip_locked=True, of=("self",))


def update_in_id_order(queryset: QuerySet, **fields) -> int:
    """Update many rows, locking them in id order first; return how many changed.

    A bare ``UPDATE … WHERE`` locks rows in whatever order it scans them, so two
    passes refreshing overlapping sets (two workers after a Redis failover both
    renewing every lease copy) can each hold a row the other waits for: found by
    the soak as a PostgreSQL deadlock. Locked in one order, the second waits instead.
    """
    ids = list(queryset.order_by("pk").select_for_update(of=("self",)).values_list("pk", flat=True))
    if not ids:
        return 0
    return queryset.model.objects.filter(pk__in=ids).update(**fields)


class KeptConnection:
    """Run reads on one thread of their own that keeps its database connection open between them.

    For a process's steady reader (the rank hub reads the queue on every
    change): a connection per read was a third of the read (measured in
    bench/: 4-6 ms to open one on PostgreSQL, 6-10 ms for the read itself), and
    Channels' ``database_sync_to_async`` shares one thread with every socket's
    own lookups. One thread, one session, opened on first use; a session the
    server dropped (a PostgreSQL restart) is closed and the read tried once more
    on a new one. ``close`` ends the session and the thread.

    The session is the thread's own, never one of the pool's (``HEARO_DB_POOL_MAX``):
    a pooled connection kept for the process's life would be a slot the
    requests never get back, and the hub's reads would queue behind theirs when
    the pool runs short. A server process opens at most the pool's sessions and this one.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=_session_of_its_own)

    async def run(self, fn: Callable[..., T], *args) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(_kept_run, fn, *args))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # close_all finds the kept thread's own session; ``connection.close``
            # would be the caller's, bound here on the event loop's thread.
            await loop.run_in_executor(self._executor, connections.close_all)
        finally:
            self._executor.shutdown(wait=False)


def _session_of_its_own(alias: str = DEFAULT_DB_ALIAS) -> None:
    """Give this thread a connection that bypasses the pool (Django's connections are per thread)."""
    kept = connections.create_connection(alias)
    options = {name: value for name, value in kept.settings_dict["OPTIONS"].items() if name != "pool"}
    kept.settings_dict = {**kept.settings_dict, "OPTIONS": options}  # a copy: the other threads keep the pool
    connections[alias] = kept


def _kept_run(fn: Callable[..., T], *args) -> T:
    reused = connection.connection is not None
    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        connection.close()  # dead or broken: the next read opens a new session
        if not reused:
            raise
    return fn(*args)  # the kept session had died while idle: once more, on a fresh one
