"""STOMP 1.2 over any transport: the session machine wired to auth, topics and the hub."""

import asyncio
import logging
import secrets

from channels.db import database_sync_to_async
from django.conf import settings

from common import events, metrics
from matching.selectors import registration_by_id_state
from realtime import destinations
from realtime.auth import Credentials, socket_session
from realtime.connection import ClientError, PushConnection
from realtime.destinations import Refused, Topic
from realtime.session import (
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    FrameHeld,
    HeartbeatReceived,
    SendRequested,
    StompSession,
    SubscribeRequested,
    TransactionAborted,
    TransactionBegun,
    TransactionCommitted,
    UnsubscribeRequested,
)
from realtime.stomp import StompError

log = logging.getLogger(__name__)

# Pieces of a frame larger than the transport's message limit (see PushConsumer).
CHUNK = 256 * 1024


class StompConnection(PushConnection):
    def __init__(self, transport, channel_name: str, scope: dict) -> None:
        super().__init__(transport, channel_name, scope)
        beat = settings.HEARO_STOMP_HEARTBEAT_MS
        self.session = StompSession(session_id=secrets.token_hex(8), server_heartbeat=(beat, beat))
        self.sub_topics: dict[str, Topic] = {}
        self._beats: asyncio.Task | None = None

    # -- inbound --------------------------------------------------------------

    async def receive(self, data: bytes | str) -> None:
        """Feed what the client sent; act on every complete frame."""
        if self.session.closed:
            return
        try:
            for event in self.session.receive_data(data):
                # Charged per frame (and heart-beat), not per WebSocket message:
                # stompjs splits one large frame into many 8 KiB messages.
                self.check_rate()
                await self.handle(event)
                if self.session.closed:
                    return
        except StompError as exc:
            metrics.frames_refused.labels(reason="malformed").inc()
            await self.fail(exc.message, exc.detail, receipt_id=exc.receipt_id, code=1002)
        except ClientError as exc:
            await self.fail(exc.message, exc.detail, code=exc.close_code)

    async def handle(self, event) -> None:
        await self.touch()
        if isinstance(event, HeartbeatReceived):
            return  # liveness counted above
        handler = {
            ConnectRequested: self.on_connect,
            SubscribeRequested: self.on_subscribe,
            UnsubscribeRequested: self.on_unsubscribe,
            SendRequested: self.on_send,
            AckReceived: self.on_ack,
            TransactionBegun: self.on_transaction_answered,
            FrameHeld: self.on_held,
            TransactionCommitted: self.on_commit,
            TransactionAborted: self.on_transaction_answered,
            DisconnectRequested: self.on_disconnect,
        }[type(event)]
        await handler(event)

    async def on_connect(self, event: ConnectRequested) -> None:
        credentials = Credentials(
            authorization=event.authorization,
            login=event.login,
            passcode=event.passcode,
            session=socket_session(self.scope),
        )
        await self.authenticate(credentials)
        await self.send(self.session.accept_connect(event, extra_headers={"user-name": self.principal.ident}))
        if self.session.outgoing_heartbeat_ms or self.session.incoming_heartbeat_ms:
            self._beats = asyncio.create_task(self._heartbeats())

    def check_room(self) -> None:
        """Refuse one subscription more than HEARO_MAX_SUBSCRIPTIONS."""
        if len(self.sub_topics) >= settings.HEARO_MAX_SUBSCRIPTIONS:
            raise ClientError("too many subscriptions", f"at most {settings.HEARO_MAX_SUBSCRIPTIONS} per connection")

    async def on_subscribe(self, event: SubscribeRequested) -> None:
        self.check_room()
        try:
            topic = self.authorize_subscribe(event.destination)
        except Refused as exc:
            raise ClientError("subscription refused", str(exc)) from None
        first = topic not in self.sub_topics.values()
        receipt = self.session.subscribe_accepted(event)
        self.sub_topics[event.id] = topic
        # RECEIPT first: the client knows it is subscribed before the snapshot lands.
        await self.send(receipt)
        if first:
            await self.attach(topic)
        elif topic.kind == "rank":
            # Another id on a topic we already watch: only the new one needs a snapshot.
            state = await database_sync_to_async(registration_by_id_state)(self.principal.registration_id)
            await self.send(self.session.message(event.id, events.compact_json(state).encode()))

    def authorize_subscribe(self, destination: str) -> Topic:
        """Return the topic this connection's principal may watch there, or raise Refused."""
        return destinations.authorize_subscribe(self.principal, destination)

    async def on_unsubscribe(self, event: UnsubscribeRequested) -> None:
        topic = self.sub_topics.pop(event.id, None)
        await self.send(self.session.unsubscribe(event))
        if topic is not None and topic not in self.sub_topics.values():
            await self.detach(topic)

    def authorize_send(self, destination: str) -> None:
        """Raise ClientError unless this connection may SEND there."""
        # Every destination carries the server's pushes: a client has nothing to SEND.
        try:
            destinations.refuse_send(destination)
        except Refused as exc:
            raise ClientError("send refused", str(exc)) from None

    async def on_send(self, event: SendRequested) -> None:
        self.authorize_send(event.destination)  # refused, unless a subclass relays it

    async def on_ack(self, event: AckReceived) -> None:
        # Product topics deliver whatever the client acks: nothing to settle.
        await self.send(self.session.receipt_for(event.frame))

    async def on_transaction_answered(self, event: TransactionBegun | TransactionAborted) -> None:
        await self.send(self.session.receipt_for(event.frame))

    async def on_held(self, event: FrameHeld) -> None:
        # A SEND that COMMIT could never deliver is refused now, not at COMMIT.
        if event.destination is not None:
            self.authorize_send(event.destination)
        await self.send(self.session.receipt_for(event.frame))

    async def on_commit(self, event: TransactionCommitted) -> None:
        # The session already took what the transaction held off its books;
        # here each SEND and ACK finally takes effect, in the order sent.
        for effect in event.events:
            if isinstance(effect, SendRequested):
                await self.on_send(effect)
            else:
                await self.on_ack(effect)
            if self.closed:
                return
        await self.send(self.session.receipt_for(event.frame))

    async def on_disconnect(self, event: DisconnectRequested) -> None:
        await self.send(self.session.disconnect(event))
        await self.transport.close(1000)

    async def fail(self, message: str, detail: str, *, receipt_id: str | None = None, code: int = 1002) -> None:
        """Send ERROR, then close: the spec's answer to anything we refuse."""
        if self.closed:
            return
        log.info("STOMP ERROR %s: %s", message, detail)
        await self.send(self.session.error(message, detail=detail, receipt_id=receipt_id))
        await self.transport.close(code)

    # -- outbound -------------------------------------------------------------

    def topics(self) -> list[Topic]:
        return list(self.sub_topics.values())

    async def send(self, data: bytes) -> None:
        if not data or self.closed:
            return
        limit = getattr(self.transport, "max_message_bytes", None)
        if limit is not None and len(data) > limit:
            # Daphne refuses to send a WebSocket message over 1 MiB; STOMP
            # clients parse a stream, so a large frame goes out in pieces.
            for start in range(0, len(data), CHUNK):
                await self.transport.send_data(data[start : start + CHUNK])
            return
        try:
            await self.transport.send_data(data.decode())
        except UnicodeDecodeError:
            await self.transport.send_data(data)  # a binary body: a binary message

    async def deliver(self, topic: Topic, body: dict) -> None:
        payload = body.json if isinstance(body, events.Encoded) else events.compact_json(body).encode()
        for sub_id, sub_topic in list(self.sub_topics.items()):
            if sub_topic == topic and not self.session.closed:
                await self.send(self.session.message(sub_id, payload))

    async def _heartbeats(self) -> None:
        """Send beats when we have been quiet; close a peer that went silent."""
        check = self.session.incoming_heartbeat_ms / 1000 or None
        while not self.session.closed and not self.closed:
            # Wake only when a beat is due or the peer's silence must be checked:
            # thousands of idle connections must not spin.
            waits = [w for w in (self.session.next_heartbeat_in(), check) if w is not None]
            await asyncio.sleep(max(0.05, min(waits)))
            if self.session.peer_timed_out():
                await self.fail("heart-beat timeout", "no data from the client within the negotiated interval")
                return
            if self.session.heartbeat_due():
                await self.transport.send_data(self.session.heartbeat().decode())

    async def release(self) -> None:
        if self._beats is not None:
            self._beats.cancel()
        await super().release()
