"""The rank hub: one per process, fanning each queue change out to local sockets.

A queue change is ONE Redis PUBLISH on ``settings.HEARO_QUEUE_BROADCAST``,
which every process's hub subscribes to (without Redis: one in-memory
channel-layer message to ``events.QUEUE_GROUP``), so it costs one command
whatever the number of customers or nodes. The hub of each process reads the
queue order once (one query, on a session it keeps open), computes every rank
and pushes a frame only to the connected customers whose rank changed.
Changes that arrive while a refresh runs are coalesced into one more refresh,
so a matcher pass that removes ten customers pushes each customer once.
"""

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from common import events, metrics, redis_clients
from common.db import KeptConnection
from matching.selectors import WaitBoard, wait_board, wait_stats_forget
from queues.selectors import QueueOrder, queue_order

log = logging.getLogger(__name__)

Push = Callable[[dict], Awaitable[None]]
# Re-join the group well within channels-redis's group_expiry (one day).
REJOIN_SECONDS = 3600
# Re-read now and then even without a message: a lost broadcast heals itself.
SAFETY_REFRESH_SECONDS = 30
# The longest the hub holds the event loop during one refresh. A heartbeat or a
# client frame that arrives meanwhile needs several loop turns to be answered,
# each waiting out one slice, so slices are kept short (a push costs ~0.1 ms).
SLICE_SECONDS = 0.002
# How long the pub/sub connection may sit idle before it is pinged.
HEALTH_CHECK_SECONDS = 15
# The pause before subscribing again after losing Redis (a failover takes seconds).
RESUBSCRIBE_SECONDS = 0.5
# How often a connection whose re-sync met a Redis still settling after a failover is tried again.
RESYNC_ATTEMPTS = 20
# What a re-sync meets while the channel layer's pool still holds connections to the lost server.
SETTLING = (RedisError, OSError, asyncio.TimeoutError)
# Broadcasts that change who serves a line, not its order: the estimates move.
STAFFING_REASONS = frozenset({"staffing", "queue_configured"})


@dataclass(eq=False)
class Watcher:
    """One subscribed connection: where to push, and what it was last told."""

    push: Push
    registration_id: int | None = None
    customer_id: str = ""
    last_rank: int | None = None
    queue_id: str | None = None  # the queue the last rank was in (an overflow moves it)
    # (estimatedWaitSeconds, estimatedWaitReason) last told; None: not known, never pushed for alone
    last_eta: tuple | None = None
    last_stats: tuple | None = field(default=None)
    # Subscribed, its snapshot not yet sent: the hub holds its pushes back (a refresh
    # read before the snapshot could otherwise land after it, or repeat it) and notes
    # the queues and urgent lines it held back, to read again once the snapshot is out.
    pending: bool = False
    missed: set[str] = field(default_factory=set)
    missed_urgent: set[tuple] = field(default_factory=set)
    # Called after the hub lost Redis and came back: ``stale`` says the hub could
    # not tell from the queue alone what this watcher should hold now.
    resync: Callable[[bool], Awaitable[None]] | None = None

    @functools.cached_property
    def customer_json(self) -> bytes:
        """``customer_id`` as JSON, encoded once (read only once the connection has set it)."""
        return events.compact_json(self.customer_id).encode()


def _read(queue_ids: frozenset[str] | None = None, fresh_board: bool = False) -> tuple[QueueOrder, WaitBoard]:
    """Read the lines of these queues (None: all) and the wait board: the hub's one database hop.

    ``fresh_board``: who serves the lines changed, so the briefly cached board is stale.
    """
    if fresh_board:
        wait_stats_forget()
    return queue_order(queue_ids=queue_ids), wait_board()


def eta_moved(before: tuple | None, after: tuple) -> bool:
    """Return whether a new estimate is news: its reason changed, or it moved by a minute and a tenth."""
    if before is None:
        return False
    (was, was_why), (now, now_why) = before, after
    if was_why != now_why or (was is None) != (now is None):
        return True
    return was is not None and abs(now - was) >= max(60, was // 10)


class RankHub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.customers: dict[int, set[Watcher]] = {}
        self.counselors: set[Watcher] = set()
        self.refreshes = 0  # read by tests and the metrics
        self._dirty = asyncio.Event()
        # What changed since the last refresh: these queues (None: any of them, read all),
        # and the lines (queue, language; language None: any) where an urgent
        # customer was let in ahead of others.
        self._pending: set[str] | None = None
        self._urgent: set[tuple[str, str | None]] = set()
        # Who serves the lines changed (a counselor on or off shift, staff settings): re-read the board.
        self._staffing = False
        # queue id -> (waiting, when its longest-waiting customer joined), for the dashboards
        self.summaries: dict[str, tuple[int, object]] = {}
        self._tasks: list[asyncio.Task] = []
        self._changed_at: float | None = None
        self.channel: str | None = None
        # The Redis server the broadcast subscription is on (None: not subscribed); /readyz reads it.
        self.subscribed_to: tuple[str, int] | None = None
        # Set when the subscription came back after a loss: the next refresh re-syncs every connection.
        self._resync = False
        self._resync_retry: asyncio.Task | None = None
        # The hub's reads: one thread and one database session of its own.
        self._db = KeptConnection("rank-hub-db")

    async def start(self) -> None:
        if settings.HEARO_QUEUE_BROADCAST:
            loops = [self._listen(settings.HEARO_QUEUE_BROADCAST)]
        else:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(events.QUEUE_GROUP, self.channel)
            loops = [self._receive(), self._keepalive()]
        for coro in (*loops, self._refresh_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def stop(self) -> None:
        if self._resync_retry is not None:
            self._tasks.append(self._resync_retry)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.channel:
            await self.layer.group_discard(events.QUEUE_GROUP, self.channel)
        await self._db.close()

    # -- who is watching ----------------------------------------------------

    def watch_rank(self, watcher: Watcher) -> None:
        self.customers.setdefault(watcher.registration_id, set()).add(watcher)

    def snapshot_sent(self, watcher: Watcher) -> None:
        """A rank watcher's snapshot is out: read again what the hub held back meanwhile.

        The read is of those queues only, and every other customer there is
        told nothing new (pushes are of changes), so the cost is one read.
        """
        watcher.pending = False
        if not watcher.missed:
            return
        queues, watcher.missed = watcher.missed, set()
        self._urgent.update(watcher.missed_urgent)
        watcher.missed_urgent = set()
        self._changed({"queues": sorted(queues)})

    def watch_queue(self, watcher: Watcher) -> None:
        self.counselors.add(watcher)

    def forget(self, watcher: Watcher) -> None:
        self.counselors.discard(watcher)
        group = self.customers.get(watcher.registration_id)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self.customers[watcher.registration_id]

    # -- the loop -------------------------------------------------------------

    def _changed(self, message: dict | None = None) -> None:
        """Note a broadcast: which queues to re-read (all when the message does not say)."""
        queues = (message or {}).get("queues")
        if not self._dirty.is_set():
            self._changed_at = time.monotonic()
            self._pending = set()
        if queues is None:
            self._pending = None
        elif self._pending is not None:
            self._pending.update(queues)
        if (message or {}).get("reason") == "urgent_joined" and queues:
            language = (message or {}).get("language")
            self._urgent.update((queue_id, language) for queue_id in queues)
        if (message or {}).get("reason") in STAFFING_REASONS:
            self._staffing = True
        self._dirty.set()

    def _changed_all(self) -> None:
        """Re-read every queue (a lost subscription, a safety refresh)."""
        self._changed(None)

    async def _listen(self, channel: str) -> None:
        """Follow the Redis pub/sub broadcast; after any loss, subscribe again and re-read."""
        client = redis_clients.async_client(socket_connect_timeout=2, health_check_interval=HEALTH_CHECK_SECONDS)
        try:
            await self._follow(client, channel)
        finally:
            await client.aclose()

    async def _follow(self, client, channel: str) -> None:
        subscribed_before = False
        while True:
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    self.subscribed_to = _peer(pubsub)
                    # Changes published while we were not subscribed are lost: re-read.
                    # After a loss (a failover, a restart), the customers' own
                    # messages may have been lost too: re-sync every connection.
                    self._resync = subscribed_before
                    subscribed_before = True
                    self._changed_all()
                    while True:
                        # A timeout, not listen(): get_message pings an idle
                        # connection, so a silently dead socket is noticed.
                        message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                        if message is not None:
                            self._changed(_decode(message.get("data")))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.subscribed_to = None
                redis_clients.watch.lost()
                log.warning("rank hub lost its Redis subscription; subscribing again")
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("rank hub lost the channel layer; rejoining")
                await asyncio.sleep(1)
                await self._rejoin()
                continue
            self._changed(message)

    async def _rejoin(self) -> None:
        try:
            await self.layer.group_add(events.QUEUE_GROUP, self.channel)
            self._changed_all()
        except Exception:
            log.warning("rank hub could not rejoin yet")

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            await self._rejoin()

    async def _refresh_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that
            # lands as the event fires, and this loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAFETY_REFRESH_SECONDS):
                    await self._dirty.wait()
            if not self._dirty.is_set():
                self._pending = None  # the safety refresh: every queue
            self._dirty.clear()
            changed_at, self._changed_at = self._changed_at, None
            queues, self._pending = self._pending, None
            urgent, self._urgent = self._urgent, set()
            staffing, self._staffing = self._staffing, False
            resync, self._resync = self._resync, False
            try:
                pushed = await self.refresh(queues, urgent=urgent, staffing=staffing, resync=resync)
                if pushed and changed_at is not None:
                    metrics.fanout.observe(time.monotonic() - changed_at)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rank refresh failed; retrying")
                await asyncio.sleep(1)
                self._changed_all()

    async def refresh(
        self,
        queue_ids: set[str] | None = None,
        *,
        urgent: set[tuple] = frozenset(),
        staffing: bool = False,
        resync: bool = False,
    ) -> int:
        """Read the changed queues once and push changed ranks and estimates; return how many pushes.

        ``resync``: messages may have been lost (the hub lost Redis): afterwards
        every connection re-joins its groups, and those the queue read cannot
        vouch for (left the queue, counselors) re-read their own state.
        """
        if not self.customers and not self.counselors:
            return 0
        read = frozenset(queue_ids) if queue_ids is not None else None
        snapshot, board = await self._db.run(_read, read, staffing)
        self.refreshes += 1
        pushes = await self._push_ranks(snapshot, board, urgent)
        pushes += await self._push_queue_stats(snapshot)
        if resync:
            await self._resync_all(snapshot)
        return pushes

    async def _resync_all(self, snapshot: QueueOrder) -> None:
        waiting = {reg_id for ids in snapshot.lines.values() for reg_id in ids}
        watchers = [(w, reg_id not in waiting) for reg_id, group in self.customers.items() for w in group]
        watchers += [(w, True) for w in self.counselors]
        log.info("re-syncing %d connections after losing Redis", len(watchers), extra={"event": "hub.resync"})
        if self._resync_retry is not None:
            self._resync_retry.cancel()  # this pass covers every connection again
            self._resync_retry = None
        failed = await self._resync_each(watchers)
        if failed:
            self._resync_retry = asyncio.create_task(self._resync_again(failed))

    async def _resync_each(self, watchers: list[tuple[Watcher, bool]]) -> list[tuple[Watcher, bool]]:
        """Re-sync each connection; return those that met a Redis still settling (to try again)."""
        failed = []
        slice_ends = time.monotonic() + SLICE_SECONDS
        for watcher, stale in watchers:
            if watcher.resync is None:
                continue
            try:
                await watcher.resync(stale)
            except SETTLING:
                failed.append((watcher, stale))
            except Exception:
                log.exception("re-sync of a local connection failed")
            if time.monotonic() > slice_ends:
                await asyncio.sleep(0)
                slice_ends = time.monotonic() + SLICE_SECONDS
        return failed

    async def _resync_again(self, failed: list[tuple[Watcher, bool]]) -> None:
        """Try the connections whose re-sync met Redis mid-failover again, until Redis answers them all.

        The hub's own subscription is back, but the channel layer's pool may
        still hand out connections to the lost primary for a moment.
        """
        for _ in range(RESYNC_ATTEMPTS):
            log.warning(
                "%d connections could not re-sync yet (Redis still settling); trying again",
                len(failed),
                extra={"event": "hub.resync_retry"},
            )
            await asyncio.sleep(RESUBSCRIBE_SECONDS)
            failed = await self._resync_each(failed)
            if not failed:
                log.info("every connection re-synced", extra={"event": "hub.resync"})
                return
        log.error(
            "%d connections could not re-sync after %d tries; they miss their own events until they reconnect",
            len(failed),
            RESYNC_ATTEMPTS,
            extra={"event": "hub.resync_failed"},
        )

    async def refresh_one(self, watcher: Watcher) -> None:
        """Send a newly watching counselor the queue summary now."""
        snapshot, _ = await self._db.run(_read)
        self._summaries_update(snapshot)
        body = queue_stats_body(self.summaries, snapshot.version)
        watcher.last_stats = tuple(sorted(self.summaries.items()))
        await self._safe_push(watcher, body)

    async def _push_ranks(self, snapshot: QueueOrder, board: WaitBoard, urgent: set[tuple]) -> int:
        pushes = 0
        slice_ends = time.monotonic() + SLICE_SECONDS
        ranks = {
            reg_id: (line, rank) for line, ids in snapshot.lines.items() for rank, reg_id in enumerate(ids, start=1)
        }
        # What every body of one line shares (queue, version, time) is encoded once per refresh.
        stamp = events.epoch_ms()
        bodies: dict[str, events.WaitingBodies] = {}
        for reg_id, watchers in list(self.customers.items()):
            found = ranks.get(reg_id)
            if found is None:
                continue  # not in a queue read now (or gone: its own message says so)
            (queue_id, language), rank = found
            for watcher in list(watchers):
                if watcher.pending:
                    watcher.missed.add(queue_id)
                    watcher.missed_urgent.update(
                        line for line in ((queue_id, language), (queue_id, None)) if line in urgent
                    )
                    continue
                eta, why = board.estimate(queue_id=queue_id, language=language, rank=rank)
                same = rank == watcher.last_rank and queue_id == watcher.queue_id
                if same and not eta_moved(watcher.last_eta, (eta, why)):
                    continue
                # Pushed back in the same line: a rank from another queue (before an
                # overflow) says nothing about who was let in ahead here.
                same_line = watcher.last_rank is not None and queue_id == watcher.queue_id
                pushed_back = same_line and rank > watcher.last_rank
                urgent_here = (queue_id, language) in urgent or (queue_id, None) in urgent
                line_bodies = bodies.get(queue_id)
                if line_bodies is None:
                    line_bodies = bodies[queue_id] = events.WaitingBodies(
                        queue_id=queue_id, version=snapshot.version, timestamp=stamp
                    )
                body = line_bodies.body(
                    customer_id=watcher.customer_id,
                    customer_json=watcher.customer_json,
                    registration_id=reg_id,
                    rank=rank,
                    eta=eta,
                    eta_reason=why,
                    # Why the number went up: someone at risk was let in ahead.
                    reason="urgent_ahead" if pushed_back and urgent_here else None,
                )
                watcher.last_rank, watcher.queue_id, watcher.last_eta = rank, queue_id, (eta, why)
                pushes += await self._safe_push(watcher, body)
                if time.monotonic() > slice_ends:
                    # Let heartbeats and other sockets in: a refresh for
                    # thousands of customers must not hold the loop whole.
                    await asyncio.sleep(0)
                    slice_ends = time.monotonic() + SLICE_SECONDS
        return pushes

    def _summaries_update(self, snapshot: QueueOrder) -> None:
        if snapshot.read is None:
            self.summaries = dict(snapshot.queues)
        else:
            self.summaries.update(snapshot.queues)

    async def _push_queue_stats(self, snapshot: QueueOrder) -> int:
        self._summaries_update(snapshot)
        body = queue_stats_body(self.summaries, snapshot.version)
        key = tuple(sorted(self.summaries.items()))
        pushes = 0
        for watcher in list(self.counselors):
            if watcher.last_stats != key:
                watcher.last_stats = key
                pushes += await self._safe_push(watcher, body)
        return pushes

    async def _safe_push(self, watcher: Watcher, body: dict) -> int:
        try:
            await watcher.push(body)
            return 1
        except Exception:
            log.exception("push to a local connection failed")
            return 0


def queue_stats_body(summaries: dict[str, tuple[int, object]], version: int) -> dict:
    """Return the dashboard's live summary: the whole service, and each queue."""
    now = time.time()

    def longest(oldest) -> int | None:
        return max(0, int(now - oldest.timestamp())) if oldest is not None else None

    queues = [
        {"queueId": queue_id, "waiting": waiting, "longestWaitSeconds": longest(oldest)}
        for queue_id, (waiting, oldest) in sorted(summaries.items())
    ]
    heads = [oldest for _, oldest in summaries.values() if oldest is not None]
    return {
        "type": "QUEUE",
        "waiting": sum(waiting for waiting, _ in summaries.values()),
        "longestWaitSeconds": longest(min(heads)) if heads else None,
        "queues": queues,
        "version": version,
        "timestamp": events.epoch_ms(),
    }


def _peer(pubsub) -> tuple[str, int] | None:
    """Return the (host, port) a pub/sub connection is on."""
    connection = pubsub.connection
    return (connection.host, connection.port) if connection is not None else None


def _decode(data) -> dict | None:
    """Return a broadcast's body (JSON over Redis pub/sub), or None if it is not one."""
    try:
        body = json.loads(data)
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


_hubs: dict[asyncio.AbstractEventLoop, RankHub] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def hubs_running() -> list[RankHub]:
    """Return the hubs started in this process (one per event loop that asked)."""
    return list(_hubs.values())


async def get_hub() -> RankHub:
    """Return this event loop's hub, starting it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is not None:
        return hub
    lock = _starting.setdefault(loop, asyncio.Lock())
    async with lock:
        if loop not in _hubs:
            hub = RankHub()
            await hub.start()
            _hubs[loop] = hub
    return _hubs[loop]


async def reset_hub() -> None:
    """Stop this loop's hub (tests start each one fresh)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.pop(loop, None)
    _starting.pop(loop, None)
    if hub is not None:
        await hub.stop()
