"""One client connection, whatever the transport: auth, topics, groups, the hub.

A ``PushConnection`` is driven by a transport (a Channels WebSocket consumer,
or later a SockJS session): the transport feeds it what the client sent and
the channel-layer messages addressed to it, and gives it ``send``/``close``.
Subclasses differ only in the encoding (STOMP frames or plain JSON).
"""

import asyncio
import logging
import time
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import events, metrics, redis_clients
from common.clientaddr import UNKNOWN, scope_client_address
from common.errors import DomainError
from matching.selectors import registration_by_id_state
from queues import leases
from realtime.auth import Credentials, authenticate
from realtime.connection_cap import Slot, address_slot_acquire, slot_acquire, slot_release
from realtime.destinations import Principal, Topic
from realtime.hub import Watcher, get_hub
from realtime.lease_keeper import lease_keeper

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def send_data(self, data: bytes | str) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


class ClientError(Exception):
    """A request this connection refuses; one place turns it into ERROR or JSON."""

    def __init__(self, message: str, detail: str = "", *, code: int = 1008) -> None:
        super().__init__(message)
        self.message, self.detail, self.close_code = message, detail or message, code


class FrameBudget:
    """A token bucket: HEARO_FRAMES_PER_SECOND sustained, a burst of twice that."""

    def __init__(self) -> None:
        self.rate = settings.HEARO_FRAMES_PER_SECOND
        self.tokens = 2.0 * self.rate
        self.at = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(2.0 * self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class PushConnection:
    def __init__(self, transport: Transport, channel_name: str, scope: dict) -> None:
        self.transport = transport
        self.channel_name = channel_name
        self.scope = scope
        self.layer = get_channel_layer()
        self.principal: Principal | None = None
        self.groups: set[str] = set()
        self.watchers: dict[Topic, Watcher] = {}
        # Once the visit left the queue (MATCHED, CANCELLED…), hub rank pushes
        # computed from an older read must not overwrite that news.
        self.left_queue = False
        # The visit's newest change delivered (its ``seq``): customer messages
        # leave from several processes and may arrive out of order.
        self.seq = 0
        self._touched = 0.0
        self.closed = False
        self.budget = FrameBudget()
        self.slot: Slot | None = None  # the customer's connection slot while it is held
        self.tier = getattr(transport, "tier", "stomp")
        self.client_address = scope_client_address(scope)
        # Until it authenticates, the socket holds a slot of its address and a deadline.
        self.address_slot: Slot | None = None
        self._tasks = [asyncio.create_task(self._guard())]

    # -- before authentication ------------------------------------------------

    async def _guard(self) -> None:
        """Count this socket against its address until it authenticates; close it at the deadline."""
        # No address to count by (a Unix socket peer): the deadline alone applies.
        if self.client_address != UNKNOWN:
            self.address_slot = await address_slot_acquire(self.client_address)
            if self.address_slot is None:
                await self._refuse_address()
                return
        if self.principal is not None or self.closed:
            await self._leave_address()  # authenticated (or gone) while the slot was being taken
            return
        await asyncio.sleep(settings.HEARO_AUTH_TIMEOUT_SECONDS)
        if self.principal is None and not self.closed:
            log.info("socket did not authenticate in time; closing it", extra=self.log_fields("ws.auth_timeout"))
            seconds = settings.HEARO_AUTH_TIMEOUT_SECONDS
            await self.fail("authentication timeout", f"authenticate within {seconds} s of opening", code=1008)
        await self._leave_address()  # a socket refused at CONNECT may linger until its disconnect

    async def _refuse_address(self) -> None:
        log.warning("too many unauthenticated sockets from one address", extra=self.log_fields("ws.address_cap"))
        await self.fail("too many connections", "too many unauthenticated connections from this address", code=1008)

    async def _leave_address(self) -> None:
        if self.address_slot is not None:
            slot, self.address_slot = self.address_slot, None
            await slot_release(slot)

    async def fail(self, message: str, detail: str, *, code: int) -> None:
        """Tell the client why (in the encoding's error shape), then close."""
        raise NotImplementedError

    # -- auth and topics ------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> Principal:
        try:
            principal = await database_sync_to_async(self.principal_for)(credentials)
        except DomainError as exc:
            log.warning("websocket authentication refused: %s", exc.detail, extra=self.log_fields("ws.auth_refused"))
            raise ClientError("authentication failed", exc.detail) from None
        if principal.kind == "customer":
            # Counted across the cluster with Redis: a customer cannot spread sockets over nodes.
            self.slot = await slot_acquire(principal.ident)
            if self.slot is None:
                fields = self.log_fields("ws.too_many_connections")
                log.warning("too many connections for one customer", extra={**fields, "customer_id": principal.ident})
                raise ClientError("too many connections", "close another tab or window first")
        self.principal = principal
        metrics.connections.labels(tier=self.tier).inc()
        self._touched = time.monotonic()
        await self._leave_address()
        if principal.kind == "customer":
            lease_keeper().hold(self)
        return principal

    def principal_for(self, credentials: Credentials) -> Principal:
        """Return who is behind the credentials, or raise DomainError (sync: runs in a thread)."""
        return authenticate(credentials)

    def check_rate(self) -> None:
        """Refuse a client that floods: ERROR and close, other connections untouched."""
        if not self.budget.spend():
            metrics.frames_refused.labels(reason="rate").inc()
            log.warning("frame rate exceeded; closing the connection", extra=self.log_fields("ws.rate_limited"))
            raise ClientError("rate limit exceeded", f"at most {self.budget.rate} frames per second")

    def log_fields(self, event: str) -> dict:
        """Return the extras a log line about this connection carries (never its credentials)."""
        fields = {"event": event, "tier": self.tier, "path": self.scope.get("path", "")}
        if self.client_address:
            fields["client"] = self.client_address
        if self.principal is not None and self.principal.kind == "customer":
            fields.update(customer_id=self.principal.ident, registration_id=self.principal.registration_id)
        elif self.principal is not None and self.principal.kind == "counselor":
            fields["counselor_id"] = self.principal.ident
        return fields

    async def attach(self, topic: Topic) -> None:
        """Join the topic's group and the hub, then send its snapshot.

        Joining before reading means no update published in between is lost.
        Until the snapshot is sent the hub holds this watcher's rank pushes and
        reads again afterwards what it held back, so a rank read before the
        snapshot never lands after it, nor repeats it; a visit's own change
        that races it is sorted out by its ``seq`` and ``left_queue``.
        """
        hub = await get_hub()
        watcher = Watcher(
            push=lambda body, t=topic: self.hub_push(t, body),
            resync=lambda stale, t=topic: self.resync(t, stale=stale),
        )
        self.watchers[topic] = watcher
        await self._group_add(self.group_of(topic))
        if topic.kind == "rank":
            watcher.registration_id = self.principal.registration_id
            watcher.customer_id = topic.ident
            watcher.pending = True
            hub.watch_rank(watcher)
            try:
                await self._send_rank_snapshot(topic, watcher)
            finally:
                hub.snapshot_sent(watcher)
        else:
            hub.watch_queue(watcher)
            await hub.refresh_one(watcher)

    def _newer(self, body: dict) -> bool:
        """Record a customer message's seq; False if the connection already delivered a later change.

        A message without one is not about a change to the visit (the naive
        fan-out baseline's ranks): the queue ``version`` orders those.
        """
        seq = body.get("seq")
        if seq is None:
            return True
        if seq < self.seq:
            return False
        self.seq = seq
        return True

    async def _send_rank_snapshot(self, topic: Topic, watcher: Watcher) -> None:
        state = await database_sync_to_async(registration_by_id_state)(self.principal.registration_id)
        if not self._newer(state):
            return  # a fresher customer event arrived while we were reading
        if state.get("status") == "WAITING":
            watcher.last_rank, watcher.queue_id = state["rank"], state.get("queueId")
            watcher.last_eta = (state.get("estimatedWaitSeconds"), state.get("estimatedWaitReason"))
        else:
            self.left_queue = True
        await self.deliver(topic, state)

    async def resync(self, topic: Topic, *, stale: bool) -> None:
        """Repair what losing Redis may have cost this topic: its group, and if ``stale`` its state.

        The promoted replica may lack the newest group memberships, and the
        messages published while no primary answered are gone. A customer still
        waiting has just had its rank from the hub; one that left the queue gets
        its state again unless it already holds it; a dashboard is told to re-read.
        """
        if self.closed or topic not in self.watchers:
            return
        await self.layer.group_add(self.group_of(topic), self.channel_name)
        if not stale:
            return
        if topic.kind != "rank":
            await self.deliver(topic, events.resync(reason="redis_failover"))
            return
        state = await database_sync_to_async(registration_by_id_state)(self.principal.registration_id)
        if state.get("seq") is not None and state["seq"] <= self.seq:
            return  # nothing happened to the visit that the client was not told
        if self._newer(state):
            self.left_queue = state.get("status") != "WAITING"
            await self.deliver(topic, state)

    async def detach(self, topic: Topic) -> None:
        watcher = self.watchers.pop(topic, None)
        if watcher is not None:
            (await get_hub()).forget(watcher)
        if not any(t == topic for t in self.topics()):
            await self._group_discard(self.group_of(topic))

    def group_of(self, topic: Topic) -> str:
        """Return the channel-layer group that carries the topic's events."""
        if topic.kind == "rank":
            return events.customer_group(topic.ident)
        return events.counselor_group(topic.ident)

    def topics(self) -> list[Topic]:
        """Return the topics still subscribed (subclasses know their subscriptions)."""
        return list(self.watchers)

    async def _group_add(self, group: str) -> None:
        if group not in self.groups:
            await self.layer.group_add(group, self.channel_name)
            self.groups.add(group)

    async def _group_discard(self, group: str) -> None:
        if group in self.groups:
            self.groups.discard(group)
            await self.layer.group_discard(group, self.channel_name)

    async def release(self) -> None:
        """Leave every group and the hub (the socket is gone)."""
        for task in self._tasks:
            # A guard cancelled mid-acquire may leave a Redis member; unrefreshed,
            # it stops counting after HEARO_CONNECTION_SLOT_SECONDS.
            task.cancel()
        await self._leave_address()
        if self.closed and self.principal is None:
            return
        self.closed = True
        if self.principal is not None:
            metrics.connections.labels(tier=self.tier).dec()
            self.principal = None
        lease_keeper().drop(self)  # the lease runs out unless the customer shows up elsewhere
        if self.slot is not None:
            slot, self.slot = self.slot, None
            await slot_release(slot)
        if self.watchers:
            hub = await get_hub()
            for watcher in self.watchers.values():
                hub.forget(watcher)
        self.watchers.clear()
        for group in list(self.groups):
            try:
                await self._group_discard(group)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # Redis is failing over: the membership expires with the group
                # (channels-redis group_expiry), and a message to it finds no channel.
                self.groups.discard(group)
                log.debug("could not leave %s: Redis unreachable", group)

    # -- inbound liveness -----------------------------------------------------

    def lease_due(self, now: float, quiet: float) -> bool:
        """Return whether this socket's customer needs its lease renewed (nothing renewed it for ``quiet`` s)."""
        principal = self.principal
        if principal is None or principal.kind != "customer" or self.left_queue or self.closed:
            return False
        return now - self._touched >= quiet

    def mark_renewed(self, now: float) -> int:
        """Note a renewal by the node's lease keeper; return the registration to renew."""
        self._touched = now
        return self.principal.registration_id

    async def touch(self) -> None:
        """Renew the customer's lease from socket traffic (at most every heartbeat interval)."""
        if time.monotonic() - self._touched >= settings.HEARO_HEARTBEAT_SECONDS:
            await self.renew()

    async def renew(self) -> None:
        """Renew the customer's lease now (from the event loop: one Redis command, no thread)."""
        if not self.lease_due(time.monotonic(), 0):
            return
        registration_id = self.mark_renewed(time.monotonic())
        try:
            await leases.arenew_many("registration", [registration_id])
        except (RedisConnectionError, RedisTimeoutError):
            # Redis is failing over or restarting: the next interval tries again, and
            # the sweep does not expire anyone across a failover (queues/leases.py).
            redis_clients.watch.lost()
            log.debug("lease renewal from socket liveness failed: Redis unreachable")
        except Exception:
            log.exception("lease renewal from socket liveness failed")

    # -- channel-layer events -------------------------------------------------

    async def layer_message(self, message: dict) -> None:
        """Handle a message addressed to this connection's groups."""
        kind = message["type"]
        if kind == "customer.event":
            if self.principal is None or message["body"].get("registrationId") != self.principal.registration_id:
                # The customer's group also carries its later visits; a socket
                # opened with this visit's (now revoked) token hears only this one.
                return
            if not self._newer(message["body"]):
                return  # older news than what the customer already holds
            topic = Topic("rank", message["body"].get("customerId", ""))
            self.left_queue = message["body"].get("status") != "WAITING"
        elif kind == "counselor.event":
            topic = next((t for t in self.watchers if t.kind == "counselor"), None)
        else:
            return  # no other kind is sent to a product topic's group
        if topic is not None and topic in self.watchers:
            await self.deliver(topic, message["body"])

    async def hub_push(self, topic: Topic, body: dict) -> None:
        if topic.kind == "rank" and self.left_queue:
            return
        await self.deliver(topic, body)

    # -- encoding-specific ----------------------------------------------------

    async def deliver(self, topic: Topic, body: dict) -> None:
        raise NotImplementedError

    async def receive(self, data: bytes | str) -> None:
        raise NotImplementedError
