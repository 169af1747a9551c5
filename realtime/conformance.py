"""The STOMP conformance broker: a plain broker for third-party clients' test suites.

A test mode, never production: with ``HEARO_STOMP_TEST_BROKER=1``
``realtime.routing`` serves every STOMP socket (``/ws/stomp``, SockJS) with
the classes here. On top of what HearO serves, a client may log in as
guest/guest and use any ``/topic/{name}`` and ``/queue/{name}`` (suites
hard-code names such as ``/topic/chat.general`` and ``/queue/test01``).
Customers and counselors are served as in production; nobody else may SEND.

- A topic relays each SEND through a channel-layer group to every
  subscriber, on any node, its body and custom headers unchanged.
- A queue hands each SEND to one of its subscribers (competing consumers,
  round robin). With ``ack:client`` (cumulative) or ``client-individual`` a
  message stays the consumer's until it ACKs; a NACK, an UNSUBSCRIBE or the
  connection closing puts it back at the head of the queue, marked
  ``redelivered:true``, for the next consumer. A message SENT while nobody
  subscribes waits for the first one.

Queues live in the memory of one process (:data:`QUEUES`): exact within a
node, but a SEND reaches only the consumers of the node it arrived on, and a
node that stops loses what its queues held. That is enough for client suites,
which open their sockets to one server; a broker that shares queues across
nodes would need the queue itself in Redis, which a test mode does not earn.
"""

import hashlib
from collections import deque
from dataclasses import dataclass, field

from common.errors import Unauthorized
from realtime.auth import Credentials
from realtime.connection import ClientError
from realtime.consumers import StompConsumer
from realtime.destinations import Principal, Topic, is_queue_destination, is_test_destination
from realtime.session import AckReceived, SendRequested, SubscribeRequested, UnsubscribeRequested
from realtime.stomp_connection import StompConnection

GUEST = Principal("guest", "guest")
TEST = "test"  # the Topic kind of a broker topic; its ident is the whole destination
QUEUE = "test-queue"  # the Topic kind of a broker queue
RELAYED = "test.message"  # the channel-layer type of a relayed SEND

# What one queue may hold for consumers that are not there (or not acking).
MAX_QUEUED_MESSAGES = 10_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Unacked messages one consumer may hold before the queue skips it (RabbitMQ's
# prefetch-count header lowers it); below the session's own unacked limit.
MAX_PREFETCH = 1000

# Headers the broker sets itself on a relayed message.
_RESERVED = {
    "destination",
    "receipt",
    "content-length",
    "content-type",
    "transaction",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
}


def test_group(destination: str) -> str:
    """Return the channel-layer group name of a test destination."""
    return "test." + hashlib.sha1(destination.encode(), usedforsecurity=False).hexdigest()


def relayed(event: SendRequested) -> dict:
    """Return the channel-layer message that carries a SEND to its destination's subscribers."""
    frame = event.frame
    return {
        "type": RELAYED,
        "destination": event.destination,
        "content_type": frame.get("content-type"),
        "headers": [[k, v] for k, v in frame.headers if k not in _RESERVED],
        "body": frame.body,
    }


# -- queues of competing consumers (one process) ------------------------------


@dataclass
class Queued:
    """One message in a queue, as its SEND left it."""

    body: bytes
    content_type: str | None
    headers: dict[str, str]
    redelivered: bool = False


@dataclass(eq=False)
class QueueConsumer:
    """One subscription to a queue: what it holds unacked, and frames not yet sent."""

    connection: "ConformanceStompConnection"
    sub_id: str
    ack: str
    prefetch: int = MAX_PREFETCH
    unacked: dict[str, Queued] = field(default_factory=dict)  # ack id -> message
    outbox: list[bytes] = field(default_factory=list)

    def ready(self) -> bool:
        return not self.connection.closed and not self.connection.session.closed and len(self.unacked) < self.prefetch

    def take(self, message: Queued) -> None:
        """Render the MESSAGE now and, in a client mode, hold it until settled.

        Synchronous on purpose: the message is on this consumer's books
        before any other task runs, so a close that races the send still
        finds it and puts it back.
        """
        session = self.connection.session
        headers = {**message.headers, **({"redelivered": "true"} if message.redelivered else {})}
        self.outbox.append(
            session.message(self.sub_id, message.body, content_type=message.content_type, headers=headers)
        )
        if self.ack != "auto":
            self.unacked[session.last_message_id] = message

    async def flush(self) -> None:
        frames, self.outbox = self.outbox, []
        for data in frames:
            await self.connection.send(data)


@dataclass
class _Queue:
    consumers: list[QueueConsumer] = field(default_factory=list)
    ready: deque[Queued] = field(default_factory=deque)
    turn: int = 0  # index of the consumer whose turn is next
    size: int = 0  # body bytes waiting in `ready`


class QueueBroker:
    """The queues of one process. Every method is synchronous: no await splits a decision."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def subscribe(self, destination: str, consumer: QueueConsumer) -> list[QueueConsumer]:
        """Add a consumer; return the consumers with messages to flush."""
        queue = self._queues.setdefault(destination, _Queue())
        queue.consumers.append(consumer)
        return self._dispatch(destination)

    def unsubscribe(self, destination: str, consumer: QueueConsumer) -> list[QueueConsumer]:
        """Remove a consumer and hand what it held unacked to the others."""
        queue = self._queues.get(destination)
        if queue is None or consumer not in queue.consumers:
            return []
        index = queue.consumers.index(consumer)
        queue.consumers.remove(consumer)
        if index < queue.turn:
            queue.turn -= 1
        held, consumer.unacked = list(consumer.unacked.values()), {}
        self._requeue(queue, held)
        return self._dispatch(destination)

    def publish(self, destination: str, message: Queued) -> list[QueueConsumer]:
        """Queue a message; raise ClientError when the queue is full."""
        queue = self._queues.setdefault(destination, _Queue())
        if len(queue.ready) >= MAX_QUEUED_MESSAGES or queue.size + len(message.body) > MAX_QUEUED_BYTES:
            raise ClientError("queue full", f"{destination!r} holds as much as it may", code=1008)
        queue.ready.append(message)
        queue.size += len(message.body)
        return self._dispatch(destination)

    def settle(self, destination: str, messages: list[Queued], *, requeue: bool) -> list[QueueConsumer]:
        """ACK (drop) or NACK (requeue) messages a consumer held; dispatch what that frees."""
        queue = self._queues.get(destination)
        if queue is None:
            return []
        if requeue:
            self._requeue(queue, messages)
        return self._dispatch(destination)

    def waiting(self, destination: str) -> int:
        """Return how many messages wait in the queue for a consumer."""
        queue = self._queues.get(destination)
        return len(queue.ready) if queue else 0

    def _requeue(self, queue: _Queue, messages: list[Queued]) -> None:
        # Back at the head, in their original order: they were sent first.
        for message in reversed(messages):
            message.redelivered = True
            queue.ready.appendleft(message)
            queue.size += len(message.body)

    def _dispatch(self, destination: str) -> list[QueueConsumer]:
        """Hand waiting messages round robin to consumers with room; return who got some."""
        queue = self._queues[destination]
        touched: list[QueueConsumer] = []
        while queue.ready:
            consumer = self._next_ready(queue)
            if consumer is None:
                break
            message = queue.ready.popleft()
            queue.size -= len(message.body)
            consumer.take(message)
            if consumer not in touched:
                touched.append(consumer)
        if not queue.consumers and not queue.ready:
            del self._queues[destination]  # suites invent names; forget the empty ones
        return touched

    def _next_ready(self, queue: _Queue) -> QueueConsumer | None:
        count = len(queue.consumers)
        for step in range(count):
            index = (queue.turn + step) % count
            if queue.consumers[index].ready():
                queue.turn = (index + 1) % count
                return queue.consumers[index]
        return None


QUEUES = QueueBroker()


async def flush(consumers: list[QueueConsumer]) -> None:
    for consumer in consumers:
        await consumer.flush()


def prefetch_of(event: SubscribeRequested) -> int:
    """Return the subscription's prefetch: RabbitMQ's prefetch-count header, capped."""
    value = event.frame.get("prefetch-count") or ""
    return min(int(value), MAX_PREFETCH) if value.isdigit() and int(value) > 0 else MAX_PREFETCH


class ConformanceStompConnection(StompConnection):
    """A StompConnection that also lets the guest use any broker topic and queue."""

    def __init__(self, transport, channel_name: str, scope: dict) -> None:
        super().__init__(transport, channel_name, scope)
        self.queue_consumers: dict[str, QueueConsumer] = {}  # subscription id -> consumer

    # -- auth and topics ------------------------------------------------------

    def principal_for(self, credentials: Credentials) -> Principal:
        if credentials.login is None:
            return super().principal_for(credentials)  # a customer or a counselor
        if (credentials.login, credentials.passcode) != ("guest", "guest"):
            raise Unauthorized("bad login")
        return GUEST

    def relays(self, destination: str) -> bool:
        """Return whether this connection may use the destination as a plain broker's."""
        return self.principal == GUEST and is_test_destination(destination)

    def authorize_subscribe(self, destination: str) -> Topic:
        if self.relays(destination):
            return Topic(QUEUE if is_queue_destination(destination) else TEST, destination)
        return super().authorize_subscribe(destination)

    def authorize_send(self, destination: str) -> None:
        if not self.relays(destination):
            super().authorize_send(destination)

    def group_of(self, topic: Topic) -> str:
        return test_group(topic.ident) if topic.kind == TEST else super().group_of(topic)

    async def attach(self, topic: Topic) -> None:
        if topic.kind == QUEUE:
            return  # a queue is no group: on_subscribe registers each subscription
        if topic.kind != TEST:
            await super().attach(topic)
            return
        # No snapshot and no hub: a test topic carries only what clients SEND.
        await self._group_add(self.group_of(topic))

    async def detach(self, topic: Topic) -> None:
        if topic.kind != QUEUE:
            await super().detach(topic)

    # -- client commands ------------------------------------------------------

    async def on_subscribe(self, event: SubscribeRequested) -> None:
        await super().on_subscribe(event)
        if self.sub_topics.get(event.id) == Topic(QUEUE, event.destination):
            # Every subscription competes, even two of one connection.
            consumer = QueueConsumer(self, event.id, event.ack, prefetch_of(event))
            self.queue_consumers[event.id] = consumer
            await flush(QUEUES.subscribe(event.destination, consumer))

    async def on_unsubscribe(self, event: UnsubscribeRequested) -> None:
        touched = []
        consumer = self.queue_consumers.pop(event.id, None)
        if consumer is not None:
            # Out of the queue before any await: a SEND running meanwhile must
            # not hand a message to a subscription the session no longer has.
            touched = QUEUES.unsubscribe(self.sub_topics[event.id].ident, consumer)
        await super().on_unsubscribe(event)
        await flush(touched)

    async def on_send(self, event: SendRequested) -> None:
        self.authorize_send(event.destination)
        if is_queue_destination(event.destination):
            frame = event.frame
            headers = {k: v for k, v in reversed(frame.headers) if k not in _RESERVED}  # the first repeat wins
            await flush(QUEUES.publish(event.destination, Queued(frame.body, frame.get("content-type"), headers)))
        else:
            await self.layer.group_send(test_group(event.destination), relayed(event))
        await self.send(self.session.receipt_for(event.frame))

    async def on_ack(self, event: AckReceived) -> None:
        consumer = self.queue_consumers.get(event.subscription or "")
        if consumer is not None:
            settled = [consumer.unacked.pop(i) for i in event.ack_ids if i in consumer.unacked]
            destination = self.sub_topics[consumer.sub_id].ident
            await flush(QUEUES.settle(destination, settled, requeue=event.nack))
        await super().on_ack(event)

    async def release(self) -> None:
        # Whatever this connection held unacked goes to the other consumers.
        consumers, self.queue_consumers = list(self.queue_consumers.values()), {}
        touched = []
        for consumer in consumers:
            touched += QUEUES.unsubscribe(self.sub_topics[consumer.sub_id].ident, consumer)
        await super().release()
        await flush(touched)

    # -- channel-layer events -------------------------------------------------

    async def layer_message(self, message: dict) -> None:
        if message["type"] != RELAYED:
            await super().layer_message(message)
            return
        topic, headers = Topic(TEST, message["destination"]), dict(message["headers"])
        for sub_id, sub_topic in list(self.sub_topics.items()):
            if sub_topic == topic and not self.session.closed:
                data = self.session.message(
                    sub_id, message["body"], content_type=message["content_type"], headers=headers
                )
                await self.send(data)


class ConformanceStompConsumer(StompConsumer):
    """``/ws/stomp`` and ``/ws/sockjs/websocket`` in the test mode: relayed SENDs arrive too."""

    connection_class = ConformanceStompConnection

    async def test_message(self, message):
        await self.connection.layer_message(message)
